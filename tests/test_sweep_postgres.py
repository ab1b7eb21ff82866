"""Sweeps across processes on a REAL PostgreSQL (127.0.0.1:5432, user postgres): each test gets a fresh database.

Skipped with the reason when no PostgreSQL answers, except under CI (CI=true), where that is a failure."""

import multiprocessing
import os
import signal
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from smelt.errors import SmeltError
from smelt.optimizers.sweep.queue import StudyIdentity, open_study, work
from smelt.optimizers.sweep.storage import open_storage

SERVER = "postgresql://postgres@127.0.0.1:5432"
IDENTITY = StudyIdentity("doc_qa", "compile", ("score",))


def _admin():
    import psycopg

    return psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3,
                           autocommit=True)


@pytest.fixture
def database():
    try:
        admin = _admin()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means no server here
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL must be reachable under CI: {exc}")
        pytest.skip(f"no PostgreSQL at 127.0.0.1:5432: {exc}")
    name = f"smelt_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    yield f"{SERVER}/{name}"
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


def _storage(url, tmp_path, heartbeat_s=60):
    return open_storage(url, tmp_path, heartbeat_s=heartbeat_s, workers=2, log=lambda message: None)


def _queue(url, tmp_path, n_trials, heartbeat_s=60):
    storage = _storage(url, tmp_path, heartbeat_s)
    return open_study(storage, "s", IDENTITY, directions=["maximize"], n_trials=n_trials, default_params=None,
                      sampler=optuna.samplers.RandomSampler(seed=0), pruner=optuna.pruners.NopPruner())


def _worker(url, tmp_path, seconds, heartbeat_s=60, hang_flag=None):
    """A worker process: claims trials until the queue is empty; each sleeps ``seconds`` (or hangs, once)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _storage(url, tmp_path, heartbeat_s)
    study = optuna.load_study(study_name="s", storage=storage, sampler=optuna.samplers.RandomSampler())

    def run(trial):
        x = trial.suggest_float("x", 0, 1)
        trial.set_user_attr("pid", os.getpid())
        if hang_flag:
            open(hang_flag, "w").close()
            time.sleep(600)  # killed with SIGKILL here
        time.sleep(seconds)
        study.tell(trial, x)

    work(study, storage, run)


def _start(*args, **kwargs):
    process = multiprocessing.get_context("spawn").Process(target=_worker, args=args, kwargs=kwargs)
    process.start()
    return process


def test_two_workers_finish_n_trials_with_none_lost_or_duplicated(database, tmp_path):
    study = _queue(database, tmp_path, n_trials=8)
    workers = [_start(database, tmp_path, 0.3) for _ in range(2)]
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    trials = study.get_trials()
    assert len(trials) == 8 and sorted(t.number for t in trials) == list(range(8))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both took part
    assert len({t.params["x"] for t in trials}) == 8


def test_a_killed_worker_has_its_trial_failed_by_heartbeat_and_retried(database, tmp_path):
    study = _queue(database, tmp_path, n_trials=2, heartbeat_s=1)
    flag = tmp_path / "hanging"
    doomed = _start(database, tmp_path, 0, 1, str(flag))
    deadline = time.monotonic() + 120
    while not flag.exists():
        assert time.monotonic() < deadline and doomed.is_alive()
        time.sleep(0.1)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.join()
    _worker(database, tmp_path, 0.1, 1)  # a surviving worker: runs the other trial, waits, takes over the dead one
    trials = {t.number: t for t in study.get_trials()}
    assert trials[0].state == TrialState.FAIL
    retried = [t for t in trials.values() if t.system_attrs.get("failed_trial") == 0]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == trials[0].params
    assert sum(t.state == TrialState.COMPLETE for t in trials.values()) == 2


def test_a_study_of_another_task_or_stage_is_refused(database, tmp_path):
    _queue(database, tmp_path, n_trials=1)
    storage = _storage(database, tmp_path)
    with pytest.raises(SmeltError, match="already a study of task doc_qa, stage compile.*pick another --study"):
        open_study(storage, "s", StudyIdentity("doc_qa", "distill", ("score",)), directions=["maximize"], n_trials=1,
                   default_params=None, sampler=None, pruner=None)


def test_unreachable_storage_is_one_line_without_the_password(tmp_path, database):
    with pytest.raises(SmeltError) as error:
        _storage("postgresql://postgres:s3cret@127.0.0.1:1/nowhere", tmp_path)
    assert "s3cret" not in str(error.value) and "***" in str(error.value)
    assert "cannot open the study storage" in str(error.value)
    with pytest.raises(SmeltError, match="database"):
        _storage(f"{SERVER}/no_such_database_here", tmp_path)
