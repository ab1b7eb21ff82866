"""``sweep``: an Optuna study over compile or distill settings; the best (or the Pareto front) vs the default.

1. The sweep's run directory, its manifest and the study (a journal file inside it, or --storage) with a
   queue of --trials trials, the first running the default configuration (``optimizers.sweep_queue``).
2. Distill stage: the teacher's SFT set is built once, here, and shared by every trial.
3. Workers (``commands.sweep_worker``: this process, or --workers processes) claim trials until the queue is
   empty: each trial samples
   its settings (TPE, seeded), runs as a compile or distill run directory under ``trials/`` and is scored
   on dev, reporting its running score so the median pruner can stop a hopeless one early.
4. Test, untouched by the search: the best trial (each Pareto trial, for two objectives) and the default
   configuration, side by side; ``best/`` holds the best trial's run; trials.jsonl, plots and report.md.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

from smelt.commands.common import check_model_options
from smelt.commands.resume import RESUMABLE_CHANGES, resumed_options
from smelt.commands.sweep_options import OBJECTIVES, SweepOptions, space_for
from smelt.commands.sweep_trials import make_stage
from smelt.commands.sweep_worker import pruner_for, retire_orphans, run_worker, run_worker_processes, worker_gpus
from smelt.errors import SmeltError
from smelt.eval.reports.sweep import pruning_savings, sweep_report, write_plots, write_trials
from smelt.eval.reports.tables import text_table
from smelt.files import write_json
from smelt.lifecycle import Run, RunOutcome, build_manifest, check_runs_root, drop_resume_hint, read_manifest
from smelt.optimizers.prompt import check_train_size, optimizers_for, writes_instructions
from smelt.optimizers.sweep.queue import DEFAULT, ERROR, StudyIdentity, open_study, slots_used, top_up
from smelt.optimizers.sweep.storage import open_storage, quiet_optuna
from smelt.programs.registry import get_task
from smelt.redaction import redact


# Long on purpose: the study's steps in the order they run, as one recipe.
def run_sweep(options: SweepOptions, log=print, *, given: dict[str, str] | None = None) -> RunOutcome:
    """The study: check everything, open the sweep's run and its study, let the workers run the trials, then the
    best against the default on test (``_finish``)."""
    started = time.perf_counter()
    options = resumed_sweep_options(options, given) if options.resume else options
    options = replace(options, trials=12 if options.trials is None else options.trials)
    options.check()
    check_runs_root(options.runs_root, options.resume)  # before any model loads
    check_model_options(options.lm if options.stage == "compile" else None, options.judge, options.metric,
                        options.device, get_task(options.task) if options.task else None)
    _check_workers_fit(options)
    quiet_optuna()
    objectives = options.objectives()
    space = space_for(options)
    # A server storage is checked before any model loads; the journal file lives in the run directory.
    storage = open_storage(options.storage, Path("."), heartbeat_s=options.heartbeat_s, workers=options.workers,
                           log=log) if options.storage else None

    stage = make_stage(options, cache=options.uses_cache(), log=log)
    if options.stage == "compile":
        _check_optimizers_fit(space, len(stage.splits.train), options.data.max_train)
        if options.prompt_lm:
            _check_prompt_lm_use(space, stage, options.prompt_lm)
    options = replace(options, task=stage.task.source)  # what a worker process resolves the task from
    study_name = options.study or f"{stage.task.name}-{options.stage}"
    recorded = {**asdict(options), "storage": redact(options.storage) if options.storage else None}
    run = Run.open(stage.task, "sweep", resume=options.resume, runs_root=options.runs_root, threads=options.threads,
                   log=log, started=started, manifest=lambda: build_manifest(
                       command="sweep", task=stage.task, options=recorded, seed=options.seed,
                       models=_models(options), data_sources=stage.splits.sources,
                       extra={"stage": options.stage, "study": study_name, "objectives": list(objectives),
                              "space": space.to_dict(), "metric": stage.metric.name,
                              "storage": redact(options.storage) if options.storage else "journal file study.journal"}))
    run_dir = run.dir
    if options.stage == "distill":
        rows = stage.prepare(run_dir)
        log(f"[smelt] SFT set shared by every trial: {len(rows)} examples -> {run_dir / 'sft.jsonl'}")

    storage = storage or open_storage(None, run_dir)
    study = _open_study(options, storage, study_name, space, stage)
    if options.resume:
        retire_orphans(study, storage)  # a killed process's trial: queued again below
        queued = top_up(study, options.trials, default_params=_default_params(stage, space))
        log(f"[smelt] resuming study {study_name}: {queued} trial(s) queued again to reach {options.trials}")
    log(f"[smelt] study {study_name} on {redact(options.storage) if options.storage else run_dir / 'study.journal'}"
        f": {options.trials} trials, {options.workers} worker(s); watch it live with "
        f"`optuna-dashboard {redact(options.storage) if options.storage else run_dir / 'study.journal'}`")

    try:
        if options.workers == 1:
            run_worker(options, run_dir, study_name, stage=stage, storage=storage, log=log)
        else:
            run_worker_processes(options, run_dir, study_name, log)
    finally:
        retire_orphans(study, storage)  # trials left RUNNING by a worker that ended: queued again on --resume
        write_trials(study, run_dir)
    return _finish(options, study, stage, space, run)


# What a resumed sweep may change besides parallelism and caching: how many trials, for how long, by how many.
SWEEP_RESUMABLE_CHANGES = ("trials", "timeout_min", "workers", "heartbeat_s", "storage")


def resumed_sweep_options(options: SweepOptions, given: dict[str, str] | None = None) -> SweepOptions:
    """--resume: the sweep continues with the options it was started with (``commands.resume``); --trials,
    --timeout and --workers may change, --storage must be given again when its URL had a password (never
    recorded)."""
    recorded_storage = read_manifest(options.resume).get("options", {}).get("storage")
    resumed = resumed_options(options, "sweep", given, changeable=(*RESUMABLE_CHANGES, *SWEEP_RESUMABLE_CHANGES))
    storage = recorded_storage
    if storage and "***" in storage:
        if not options.storage or redact(options.storage) != storage:
            raise SmeltError(f"--resume {options.resume}: pass --storage again ({storage}, with its password: "
                             "passwords are never recorded)")
        storage = options.storage
    elif options.storage and options.storage != storage:
        raise SmeltError(f"--resume {options.resume}: --storage {redact(options.storage)} contradicts the run, which "
                         f"was started with --storage {storage or '(a journal file in the run directory)'}")
    return replace(resumed, storage=storage)


def _models(options: SweepOptions) -> dict:
    """The sweep's models as its manifest records them; a server model with the API base it is called on (no
    password), as each trial's manifest records it too."""
    server = {"api_base": redact(options.api_base)} if options.api_base else {}
    if options.stage == "compile":
        models = {"program": {"spec": options.lm, **server}}
        if options.prompt_lm:
            models["prompt"] = {"spec": options.prompt_lm, **server}
    else:
        models = {"program": {"spec": options.student}, "teacher": {"source": options.teacher}}
    return models | ({"judge": {"spec": options.judge, **server}} if options.judge else {})


def _check_optimizers_fit(space, train_size: int, max_train: int | None) -> None:
    """Every optimizer the space can draw runs on the train split (checked before any model loads)."""
    optimizer = space.params.get("optimizer")
    fits = ", ".join(optimizers_for(train_size))
    instead = f"sweep only the optimizers that fit (a --space file with optimizer: [{fits}])"
    for name in optimizer.checked_values() if optimizer else ():
        check_train_size(name, train_size, max_train=max_train, instead=instead)


def _check_prompt_lm_use(space, stage, prompt_lm: str) -> None:
    """--prompt-lm has an optimizer to write instructions for among those the space draws."""
    optimizer = space.params.get("optimizer")
    names = optimizer.checked_values() if optimizer else [stage.knob_defaults["optimizer"]]
    if not any(writes_instructions(name) for name in names):
        raise SmeltError(f"--prompt-lm {prompt_lm}: the space draws no optimizer that writes instructions "
                         f"({', '.join(names)}); add mipro, copro, simba or gepa to its optimizer entry (--space "
                         "FILE), or drop --prompt-lm")


def _check_workers_fit(options: SweepOptions) -> None:
    """One worker per GPU (``--device auto`` too, where CUDA is there), checked before any model loads."""
    if options.workers > 1:
        worker_gpus(options.device, options.workers)


def _open_study(options: SweepOptions, storage, name: str, space, stage):
    identity = StudyIdentity(stage.task.name, options.stage, options.objectives(), space.to_dict())
    directions = [OBJECTIVES[name][1] for name in options.objectives()]
    return open_study(storage, name, identity, directions=directions, n_trials=options.trials,
                      default_params=_default_params(stage, space), sampler=None,
                      pruner=pruner_for(options, len(stage.splits.dev)))


def _default_params(stage, space) -> dict | None:
    """The default configuration as trial parameters, or None when the space leaves it out."""
    default = {k: v for k, v in stage.default_params().items() if k in space.params}
    return default if space.contains(default) else None


def _finish(options: SweepOptions, study, stage, space, run: Run) -> RunOutcome:
    """Score the best trial(s) and the default on test, keep best/, and write summary, plots and report."""
    from optuna.trial import TrialState

    run_dir, log = run.dir, run.log

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise _no_trial_finished(study, options.trials, run_dir)
    best = list(study.best_trials) if len(options.objectives()) > 1 else [study.best_trial]
    best.sort(key=lambda t: t.number)
    default_trial = next((t for t in complete if t.user_attrs.get(DEFAULT)), None)
    default_dir = _local_dir(default_trial, stage, run_dir, log) if default_trial else run_dir / "default"
    if default_trial is None and not (default_dir / "summary.json").exists():
        log("[smelt] the default configuration did not finish as a trial; running it for the comparison")
        stage.run(stage.default_params(), default_dir, trial_number=None)
        stage.release(default_dir)

    columns, test_summaries = {}, {}
    default_number = default_trial.number if default_trial else None
    compared = [(f"trial {t.number}" + (" (best = default)" if t.number == default_number else " (best)"),
                 _local_dir(t, stage, run_dir, log)) for t in best]
    if default_number not in [t.number for t in best]:
        compared.append((f"trial {default_number} (default)" if default_trial else "default", default_dir))
    for label, trial_dir in compared:
        if trial_dir is None:
            columns[label] = {}
            continue
        program, lm = stage.load(trial_dir)
        trial_run = Run(trial_dir, stage.name, stage.task, options.threads, log)  # its test split, in its own eval/
        result = trial_run.score(program, stage.splits.test, name="test", metric=stage.metric, lm=lm,
                                 desc=f"{label} test", latency_sample=options.latency_sample)
        stage.release(trial_dir)
        columns[label] = result.summary
        test_summaries[label] = result.summary
    best_dir = _local_dir(best[0], stage, run_dir, log)
    if best_dir is not None:
        _keep_best(best_dir, run_dir / "best")
    plots = write_plots(study, run_dir, options.objectives(), log=log)
    trials = study.get_trials(deepcopy=False)
    pruned, saved = pruning_savings(trials, len(stage.splits.dev))
    summary = {
        "task": stage.task.name, "command": "sweep", "stage": options.stage, "study": study.study_name,
        "objectives": list(options.objectives()), "metric": stage.metric.name,
        "trials": {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState},
        "pruned_dev_examples_saved": saved,
        "best": [{"number": t.number, "params": t.params, "values": t.values,
                  "run_dir": t.user_attrs.get("run_dir")} for t in best],
        "default": {"number": default_trial.number if default_trial else None, "run_dir": str(default_dir)},
        "test": test_summaries, "space": space.to_dict(), "plots": plots,
    }
    return run.finish(summary, report=lambda done: sweep_report(done, trials, columns, pruned=pruned),
                      table=text_table({k: v for k, v in columns.items() if v}))


def _no_trial_finished(study, n_trials: int, run_dir: Path) -> SmeltError:
    """Why no trial finished, and what helps. --resume runs the trials still queued or interrupted (the CLI names
    it); a trial that failed by its own error, or was pruned, used its slot, so --resume would not run it again:
    then the advice is to fix the cause and start the sweep anew, never --resume."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    listed = run_dir / "trials.jsonl"
    if any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials) or slots_used(trials) < n_trials:
        return SmeltError(f"no trial finished yet (see {listed}); nothing to compare on test")
    drop_resume_hint()  # nothing to continue: the CLI must not offer --resume
    failed = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get(ERROR)]
    if not failed:
        return SmeltError(f"no trial finished (see {listed}); nothing to compare on test; run the sweep again as a "
                          "new run (a resumed sweep does not retry failed or pruned trials)")
    error = str(failed[0].user_attrs[ERROR])
    return SmeltError(f"every trial failed; trial {failed[0].number}: {error[:300]}{'...' if len(error) > 300 else ''}"
                      f" (each trial's error is in {listed}); fix that and run the sweep again as a new run, "
                      "without --resume (a resumed sweep does not retry failed trials)")


def _local_dir(trial, stage, run_dir: Path, log) -> Path | None:
    """The trial's run directory on this machine; a compile trial run elsewhere is rebuilt from its program."""
    trial_dir = Path(trial.user_attrs.get("run_dir", ""))
    if (trial_dir / "program.json").is_file():
        return trial_dir
    if stage.name == "compile" and trial.user_attrs.get("program"):
        local = run_dir / "remote-trials" / f"trial-{trial.number:03d}"
        shutil.rmtree(local, ignore_errors=True)  # never score against another program's records
        local.mkdir(parents=True)
        (local / "program.json").write_text(trial.user_attrs["program"], encoding="utf-8")
        write_json(local / "manifest.json", {"command": "compile", "task": stage.task.name,
                                             "task_source": stage.task.source, "sweep_trial": trial.number,
                                             "program_options": trial.user_attrs.get("program_options"),
                                             "models": {"program": stage.lm.describe()}})
        (local / "eval").mkdir(exist_ok=True)
        return local
    log(f"[smelt] trial {trial.number} ran on {trial.user_attrs.get('host')} ({trial_dir}): score it there with "
        f"`python cli.py eval {stage.task.source} --program {trial_dir}`")
    return None


def _keep_best(trial_dir: Path, best: Path) -> None:
    """best/: a copy of the best trial's run (manifest, program, adapter, evals), without training checkpoints."""
    tmp = best.with_name("best.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(trial_dir, tmp, ignore=shutil.ignore_patterns("checkpoints", "*.tmp"))
    shutil.rmtree(best, ignore_errors=True)
    tmp.replace(best)
