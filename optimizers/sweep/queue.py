"""The trial queue: exactly N trials of one study, shared by any number of workers on any number of machines.

Optuna's ``study.optimize(n_trials=N)`` counts per worker, and a shared ``MaxTrialsCallback`` can overshoot when
workers start trials at the same moment. So a sweep queues its trials up front: the process that creates the
study enqueues N empty WAITING trials (the first holding the default configuration), and a worker only ever
*claims* a waiting trial, which the storage does atomically (a compare-and-set of its state). A trial that a
dead worker left behind is failed by heartbeat (PostgreSQL) and queued again by Optuna's retry callback;
``--resume`` tops the queue back up to N after an interrupt.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from smelt.errors import SmeltError

# User attributes smelt sets on trials (JSON values only; never a pickle).
INTERRUPTED = "interrupted"  # failed by Ctrl-C or by the worker's end: its slot is queued again on --resume
ERROR = "error"  # failed by an error in the trial itself: it used its slot
DEFAULT = "default"  # the trial running the default configuration
STUDY_READY = "queued_trials"  # study user attribute: the queue is in place


@dataclass(frozen=True)
class StudyIdentity:
    """What a study is for; a worker joining a study of another task, stage or objective is refused."""

    task: str
    stage: str
    objectives: tuple[str, ...]
    space: dict | None = None  # Optuna refuses a parameter whose choices change within a study

    def attrs(self) -> dict:
        return {"task": self.task, "stage": self.stage, "objectives": list(self.objectives), "space": self.space}


def open_study(storage, name: str, identity: StudyIdentity, *, directions: list[str], n_trials: int,
               default_params: dict | None, sampler, pruner, wait_s: float = 30.0) -> optuna.Study:
    """Create the study and its queue of ``n_trials``, or join it once its creator has queued them."""
    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=directions, sampler=sampler,
                                    pruner=pruner)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        deadline = time.monotonic() + wait_s
        while STUDY_READY not in study.user_attrs:  # its creator is still queueing the trials
            if time.monotonic() > deadline:
                raise SmeltError(f"--study {name}: exists but is not a smelt sweep; pick another --study name") \
                    from None
            time.sleep(0.5)
        _check_identity(study, name, identity)
        return study
    for key, value in identity.attrs().items():
        study.set_user_attr(key, value)
    if default_params is not None:
        study.enqueue_trial(default_params, user_attrs={DEFAULT: True})
    for _ in range(n_trials - (default_params is not None)):
        study.enqueue_trial({})
    study.set_user_attr(STUDY_READY, n_trials)
    return study


def _check_identity(study: optuna.Study, name: str, identity: StudyIdentity) -> None:
    recorded = {key: study.user_attrs.get(key) for key in ("task", "stage", "objectives", "space")}
    if recorded["space"] != identity.space and recorded["task"] == identity.task:
        raise SmeltError(f"--study {name}: its trials were sampled from another search space (a different --space "
                         f"file, or --lm with other optimizers); use the same ones, or another --study name")
    if recorded != identity.attrs():
        raise SmeltError(f"--study {name}: already a study of task {recorded['task']}, stage {recorded['stage']}, "
                         f"objective {','.join(recorded['objectives'] or [])}; this sweep is {identity.task}, "
                         f"{identity.stage}, {','.join(identity.objectives)}: pick another --study name")


def slots_used(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Trials that count towards N: finished, running or queued, and those failed by their own error."""
    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    return sum(t.state in live or (t.state == TrialState.FAIL and bool(t.user_attrs.get(ERROR))) for t in trials)


def top_up(study: optuna.Study, n_trials: int, default_params: dict | None = None) -> int:
    """Queue trials until N count (after an interrupt, or to extend a study); returns how many were queued.
    The default configuration is queued again if its trial did not finish."""
    trials = study.get_trials(deepcopy=False)
    missing = max(0, n_trials - slots_used(trials))
    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    default_queued = 0
    if missing and default_params is not None and not any(t.user_attrs.get(DEFAULT) and t.state in live
                                                          for t in trials):
        study.enqueue_trial(default_params, user_attrs={DEFAULT: True})
        default_queued = 1
    for _ in range(missing - default_queued):
        study.enqueue_trial({})
    study.set_user_attr(STUDY_READY, n_trials)
    return missing


def claim_trial(study: optuna.Study, storage) -> optuna.Trial | None:
    """Atomically take a waiting trial (RUNNING from here on), or None when the queue is empty."""
    study_id = storage.get_study_id_from_name(study.study_name)
    for waiting in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, waiting.number)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker took it and already finished it
    return None


def has_heartbeat(storage) -> bool:
    """RDB storages opened with a heartbeat interval (journal files have none)."""
    interval = getattr(storage, "get_heartbeat_interval", None)
    return interval is not None and interval() is not None


@contextmanager
def heartbeat(storage, trial_id: int) -> Iterator[None]:
    """Record the trial's heartbeat every interval while it runs (RDB storage with heartbeats only)."""
    if not has_heartbeat(storage):
        yield
        return
    stop = threading.Event()
    interval = storage.get_heartbeat_interval()

    def beat():
        while True:
            try:
                storage.record_heartbeat(trial_id)
            except Exception:  # noqa: BLE001 - a database blip: beat again next time rather than fall silent
                pass
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def fail_stale(study: optuna.Study) -> None:
    """Fail the trials of workers that stopped beating (their retry is queued by the storage's callback)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def work(study: optuna.Study, storage, run_trial: Callable[[optuna.Trial], None], *,
         deadline: float | None = None, idle_poll_s: float | None = None) -> int:
    """Claim and run trials until the queue is empty (or ``deadline``, a ``time.time()``); returns how many ran.

    With heartbeats, a worker whose queue is empty while others still run waits (every ``idle_poll_s``), so it
    can take over the trial of a worker that dies."""
    ran = 0
    # Checking for stale trials is one cheap query: do it every second, not once per (possibly long) heartbeat,
    # so an idle worker leaves within a second of the last running trial.
    poll = idle_poll_s or (min(1, storage.get_heartbeat_interval()) if has_heartbeat(storage) else None)
    while deadline is None or time.time() < deadline:
        fail_stale(study)
        trial = claim_trial(study, storage)
        if trial is None:
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if not poll or not running:
                return ran
            time.sleep(poll)
            continue
        study_id = storage.get_study_id_from_name(study.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        with heartbeat(storage, trial_id):
            run_trial(trial)
        ran += 1
    return ran
