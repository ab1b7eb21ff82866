"""The sweep's workers: claim trials from the study's queue and run them, in this process or in --workers
processes (one per GPU). A trial samples its settings, runs the stage into trials/trial-NNN, and tells the
study its dev values, or that it was pruned or failed."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from smelt.commands.sweep_options import OBJECTIVES, SweepOptions, space_for
from smelt.commands.sweep_trials import make_stage
from smelt.errors import ModelCallsFailed, SmeltError
from smelt.lifecycle import read_manifest
from smelt.optimizers.sweep.queue import ERROR, INTERRUPTED, has_heartbeat, work
from smelt.optimizers.sweep.storage import open_storage, quiet_optuna
from smelt.redaction import redact_text


def pruner_for(options: SweepOptions, dev_size: int):
    """The median pruner for one objective; none for two (Optuna prunes single-objective studies only)."""
    import optuna

    if len(options.objectives()) > 1:
        return optuna.pruners.NopPruner()
    # Scores of the first few examples are noisy: judge a trial after a third of dev, against 2 finished trials.
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=max(1, dev_size // 3))


def run_worker(options: SweepOptions, run_dir: Path, study_name: str, *, stage=None, storage=None,
               log=print) -> int:
    """Claim and run trials of the study until its queue is empty; returns how many this worker ran."""
    import optuna

    quiet_optuna()
    if stage is None:  # a worker process of its own

        stage = make_stage(options, cache=options.uses_cache(), log=log)
        if options.stage == "distill":
            stage.use_shared(run_dir)
    stage.warm_up()
    storage = storage or open_storage(options.storage, run_dir, heartbeat_s=options.heartbeat_s,
                                      workers=options.workers, log=log)
    # The sampler is set per trial (run_trial); the pruner is the study's.
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner_for(options, len(stage.splits.dev)))
    space = space_for(options)
    deadline = time.time() + 60 * options.timeout_min if options.timeout_min else None
    return work(study, storage, lambda trial: run_trial(trial, study, stage, space, options, run_dir, log),
                deadline=deadline)


# Long on purpose: one trial's outcomes (complete, pruned, failed, interrupted) told to the study side by side.
def run_trial(trial, study, stage, space, options: SweepOptions, run_dir: Path, log) -> None:
    """One trial: sample, run the stage into trials/trial-NNN, tell the study its dev values (or pruned/failed)."""
    import optuna
    from optuna.trial import TrialState

    started = time.perf_counter()
    # TPE samples its first trials at random: seeding by (seed, trial number), not per process, keeps a resumed
    # sweep and workers on other machines from repeating each other's settings, and a trial reproducible.
    study.sampler = optuna.samplers.TPESampler(seed=options.seed * 100_003 + trial.number)
    trial_dir = run_dir / "trials" / f"trial-{trial.number:03d}"
    trial.set_user_attr("run_dir", str(trial_dir.resolve()))
    trial.set_user_attr("host", os.uname().nodename)
    for stale in (ERROR, INTERRUPTED):  # a retried trial starts with the attributes of the one it retries
        if stale in trial.user_attrs:
            trial.set_user_attr(stale, None)
    single = len(options.objectives()) == 1
    scored = {"n": 0}

    def progress(done: int, mean: float) -> None:
        scored["n"] = done
        if single:
            trial.report(mean, step=done)
            if trial.should_prune():
                raise optuna.TrialPruned(f"dev score {mean:.3f} after {done} examples")

    label = f"[smelt] trial {trial.number}"
    try:
        params = space.suggest(trial)
        label = f"[smelt] trial {trial.number} ({_describe(params)})"
        summary = stage.run(params, trial_dir, progress=progress, trial_number=trial.number)
    except optuna.TrialPruned as pruned:
        trial.set_user_attr("dev_examples_scored", scored["n"])
        study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        log(f"{label}: pruned, {pruned} ({time.perf_counter() - started:.0f} s)")
        return
    except KeyboardInterrupt:
        trial.set_user_attr(INTERRUPTED, True)
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        raise
    except ModelCallsFailed:  # a broken setup, not this trial's settings: stop; the trial runs again on --resume
        trial.set_user_attr(INTERRUPTED, True)
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        raise
    except SmeltError as exc:
        _fail(trial, study, exc, label, log)
        return
    except Exception as exc:  # noqa: BLE001 - one failing configuration must not end the sweep
        _fail(trial, study, exc, label, log)
        return
    finally:
        stage.release(trial_dir)
    values = [summary.get(OBJECTIVES[name][0]) for name in options.objectives()]
    if any(v is None for v in values):
        _fail(trial, study, SmeltError(f"no {options.objective} measured on dev"), label, log)
        return
    trial.set_user_attr("dev", {k: summary.get(k) for k in ("score", "examples", "parse_failures", "errors",
                                                            "prompt_tokens_per_example", "latency_s_per_example")})
    trial.set_user_attr("dev_examples_scored", summary["examples"])
    if (trial_dir / "program.json").is_file() and options.stage == "compile":
        # So any machine sharing the study can rebuild the program (DSPy JSON, never a pickle).
        trial.set_user_attr("program", (trial_dir / "program.json").read_text(encoding="utf-8"))
        trial.set_user_attr("program_options", read_manifest(trial_dir)["program_options"])
    study.tell(trial, values if len(values) > 1 else values[0], skip_if_finished=True)
    shown = ", ".join(f"{name} {value:.3f}" for name, value in zip(options.objectives(), values, strict=True))
    log(f"{label}: dev {shown} ({time.perf_counter() - started:.0f} s)")


def _fail(trial, study, exc: Exception, label: str, log) -> None:
    from optuna.trial import TrialState

    # The study's storage (a journal file in the run, or a database) holds the message: no password in it.
    message = redact_text(f"{type(exc).__name__}: {str(exc)[:300]}" if not isinstance(exc, SmeltError) else str(exc))
    trial.set_user_attr(ERROR, message)
    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    log(f"{label}: failed, {message}")


def _describe(params: dict) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def worker_gpus(device: str, workers: int) -> list[str | None]:
    """The GPU each of ``workers`` worker processes gets, as its CUDA_VISIBLE_DEVICES: one per GPU, in the order
    CUDA_VISIBLE_DEVICES lists them (else 0, 1, ...); None for every worker on the CPU. ``--device auto`` where
    CUDA is available means CUDA; ``cuda:N`` puts every worker on GPU N. More workers than GPUs is refused."""
    import torch

    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not on_cuda:
        return [None] * workers
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = ([gpu.strip() for gpu in visible.split(",") if gpu.strip()] if visible is not None
            else [str(index) for index in range(torch.cuda.device_count())])
    seen = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
    if device.startswith("cuda:"):
        index = int(device.partition(":")[2])
        if index >= len(gpus):
            raise SmeltError(f"--device {device}: {len(gpus)} GPU(s) visible{seen}; use cuda:0 .. cuda:{len(gpus) - 1}")
        return [gpus[index]] * workers
    if workers > len(gpus):
        raise SmeltError(f"--workers {workers} with --device {device}: {len(gpus)} GPU(s) visible{seen}, and each "
                         f"worker takes one; use at most --workers {len(gpus)}, or --device cuda:N to share GPU N")
    return gpus[:workers]


def run_worker_processes(options: SweepOptions, run_dir: Path, study_name: str, log) -> None:
    """--workers N: N processes on this machine, each with its own model (and, with CUDA, its own GPU)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads or CUDA state
    processes = []
    for worker, gpu in enumerate(worker_gpus(options.device, options.workers)):
        env = {"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {}
        if gpu is not None:
            log(f"[smelt] worker {worker}: GPU {gpu}")
        process = context.Process(target=_worker_process, args=(options, run_dir, study_name, worker, env),
                                  name=f"smelt-sweep-worker-{worker}")
        process.start()
        processes.append(process)
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        for process in processes:  # they got Ctrl-C too; give them a moment to record their trials as failed
            process.join(timeout=30)
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join()
        raise
    failed = [p.name for p in processes if p.exitcode not in (0, None)]
    if failed:
        log(f"[smelt] worker(s) ended with an error: {', '.join(failed)} (their running trials are queued again "
            "on --resume)")


def _worker_process(options: SweepOptions, run_dir: Path, study_name: str, worker: int, env: dict) -> None:
    import sys

    os.environ.update(env)
    if options.device.startswith("cuda:"):
        options = replace(options, device="cuda")  # the one GPU this process sees
    try:
        run_worker(options, run_dir, study_name,
                   log=lambda message: print(redact_text(f"[worker {worker}] {message}"), file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        sys.exit(130)
    except SmeltError as exc:
        print(redact_text(f"[worker {worker}] error: {exc}"), file=sys.stderr, flush=True)
        sys.exit(2)


def retire_orphans(study, storage) -> None:
    """RUNNING trials whose worker is gone: failed as interrupted (journal storage has no heartbeat)."""
    from optuna.trial import TrialState

    if has_heartbeat(storage):
        return  # other machines may still be running them; heartbeats settle it
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, INTERRUPTED, True)
        storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
