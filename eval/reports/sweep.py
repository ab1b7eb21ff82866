"""What a sweep leaves for a person: trials.jsonl, plots (Optuna's matplotlib ones, as PNG) and report.md."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from smelt.eval.reports.tables import markdown_table
from smelt.files import write_text


def trial_record(trial) -> dict:
    """One line of trials.jsonl."""
    duration = (trial.datetime_complete - trial.datetime_start).total_seconds() \
        if trial.datetime_complete and trial.datetime_start else None
    attrs = trial.user_attrs
    return {
        "number": trial.number, "state": trial.state.name.lower(), "params": trial.params, "values": trial.values,
        "duration_s": round(duration, 1) if duration is not None else None, "run_dir": attrs.get("run_dir"),
        "host": attrs.get("host"), "default": bool(attrs.get("default")), "dev": attrs.get("dev"),
        "dev_examples_scored": attrs.get("dev_examples_scored"), "error": attrs.get("error"),
        "interrupted": bool(attrs.get("interrupted")), "retry_of": trial.system_attrs.get("failed_trial"),
    }


def write_trials(study, run_dir: Path) -> None:
    lines = [json.dumps(trial_record(t), ensure_ascii=False) for t in study.get_trials(deepcopy=False)]
    write_text(run_dir / "trials.jsonl", "".join(line + "\n" for line in lines))


def pruning_savings(trials, dev_size: int) -> tuple[int, int]:
    """(pruned trials, dev examples they did not have to score)."""
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    return len(pruned), sum(max(0, dev_size - int(t.user_attrs.get("dev_examples_scored") or 0)) for t in pruned)


def write_plots(study, run_dir: Path, objectives: tuple[str, ...], log=print) -> list[str]:
    """Optimization history, parameter importances, and the Pareto front for two objectives, as PNG files."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as plots

    score = (lambda t: t.values[0]) if len(objectives) > 1 else None  # noqa: E731
    wanted = [("history.png", lambda: plots.plot_optimization_history(study, target=score, target_name="dev score")),
              ("importances.png", lambda: plots.plot_param_importances(study, target=score, target_name="dev score"))]
    if len(objectives) > 1:
        wanted.append(("pareto.png", lambda: plots.plot_pareto_front(study, target_names=["dev score", objectives[1]])))
    written = []
    for name, draw in wanted:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                axes = draw()
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            figure.savefig(run_dir / name, dpi=100)
            plt.close(figure)
            written.append(name)
        except Exception as exc:  # noqa: BLE001 - e.g. importances need two finished trials with varied params
            log(f"[smelt] no {name}: {type(exc).__name__}: {str(exc)[:120]}")
    return written


def _value(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def sweep_report(summary: dict, trials, columns: dict, *, pruned: int) -> str:
    """The sweep's report.md: best vs default on test, then every trial."""
    objectives = summary["objectives"]
    names = sorted({name for t in trials for name in t.params})
    counts = summary["trials"]
    lines = [
        f"# sweep {summary['task']} — stage {summary['stage']}, objective {', '.join(objectives)}",
        "",
        f"Study `{summary['study']}`, metric **{summary['metric']}** on dev for the search, test only at the end. "
        f"Trials: {counts.get('complete', 0)} complete, {pruned} pruned (saving "
        f"{summary['pruned_dev_examples_saved']} dev examples), {counts.get('fail', 0)} failed. "
        f"Wall time {summary['wall_s']} s.",
        "",
        "## Best vs default on test",
        "",
        markdown_table({k: v for k, v in columns.items() if v}) if any(columns.values()) else "(not scored here)",
        "",
        "Best trial(s): " + "; ".join(f"#{b['number']} `{b['run_dir']}`" for b in summary["best"])
        + " (a copy is in `best/`).",
        "",
        "## Trials",
        "",
        "| # | state | " + " | ".join(f"dev {o}" for o in objectives) + " | " + " | ".join(names)
        + " | dev examples | time (s) |",
        "|" + "---:|" * (4 + len(objectives) + len(names)),
    ]
    for t in trials:
        record = trial_record(t)
        values = record["values"] or [None] * len(objectives)
        state = record["state"] + (" (default)" if record["default"] else "")
        lines.append(f"| {t.number} | {state} | " + " | ".join(_value(v) for v in values) + " | "
                     + " | ".join(_value(t.params.get(n)) for n in names)
                     + f" | {_value(record['dev_examples_scored'])} | {_value(record['duration_s'])} |")
    errors = [(t.number, t.user_attrs["error"]) for t in trials if t.user_attrs.get("error")]
    if errors:
        lines += ["", "## Failed trials", ""] + [f"- #{n}: {e}" for n, e in errors]
    if summary["plots"]:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in summary["plots"]]
    return "\n".join(lines) + "\n"
