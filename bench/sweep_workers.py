"""Trials per minute with 1, 2, 4 and 8 worker processes sharing one study, on the journal file and PostgreSQL.

Each trial samples one parameter and sleeps 2 s, standing in for a GPU-bound trial so that the 2 CPU cores are
not the limit; what is measured is smelt's trial queue (claim, heartbeat, tell) on each storage. The anchor is
1 worker on the same storage in the same run; the target is >= 0.8 x N. Storage overhead per trial =
(wall x workers - trials x 2 s) / trials: the time a worker spends on a trial outside its 2 s of work. Wall
time runs from the start signal to the last trial's completion as the storage recorded it.

    python -m bench.sweep_workers                       # journal file and PostgreSQL at 127.0.0.1:5432
    python -m bench.sweep_workers --trials 32 --postgres postgresql://postgres@db-host/postgres
"""

import argparse
import multiprocessing
import os
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import optuna

from bench.machine import cpu_name
from smelt.optimizers.sweep.queue import StudyIdentity, open_study, work
from smelt.optimizers.sweep.storage import open_storage

TRIAL_SECONDS = 2.0
IDENTITY = StudyIdentity("bench", "compile", ("score",))


def _open(url: str | None, folder: Path, workers: int):
    return open_storage(url, folder, heartbeat_s=60, workers=workers, log=lambda message: None)


def _worker(url: str | None, folder: Path, workers: int, ready, start) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _open(url, folder, workers)
    study = optuna.load_study(study_name="bench", storage=storage, sampler=optuna.samplers.RandomSampler())

    def run(trial):
        x = trial.suggest_float("x", 0, 1)
        time.sleep(TRIAL_SECONDS)
        study.tell(trial, x)

    ready.put(1)
    start.wait()
    work(study, storage, run)


def measure(url: str | None, folder: Path, workers: int, trials: int) -> float:
    """Seconds from the start signal until ``workers`` processes have finished ``trials`` queued trials."""
    storage = _open(url, folder, workers)
    study = open_study(storage, "bench", IDENTITY, directions=["maximize"], n_trials=trials, default_params=None,
                       sampler=None, pruner=None)
    context = multiprocessing.get_context("spawn")
    ready, start = context.Queue(), context.Event()
    processes = [context.Process(target=_worker, args=(url, folder, workers, ready, start)) for _ in range(workers)]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=120)  # every worker has imported optuna and opened the storage
    began = datetime.now()
    start.set()
    for process in processes:
        process.join()
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == trials, f"{len(done)} of {trials} trials completed"
    # Until the last trial completed: an idle worker's last poll for stale trials is not trial throughput.
    return (max(t.datetime_complete for t in done) - began).total_seconds()


def _postgres_database(server: str) -> tuple[str, callable]:
    """A fresh database on the server for one measurement, and how to drop it."""
    import psycopg

    base = server.rsplit("/", 1)[0]
    name = f"smelt_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")

    def drop():
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    return f"{base}/{name}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16, help="trials per measurement (default 16)")
    parser.add_argument("--workers", default="1,2,4,8", help="worker counts to measure (default 1,2,4,8)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a PostgreSQL server URL (its database is used to create one per measurement); "
                             "'none' to skip")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores")
    print(f"{args.trials} trials of {TRIAL_SECONDS:.0f} s each per measurement\n")
    print(f"{'storage':<10} {'workers':>7} {'wall s':>8} {'trials/min':>10} {'x 1 worker':>10} {'target':>7} "
          f"{'overhead ms/trial':>17}")
    storages = ["journal"] + ([] if args.postgres == "none" else ["postgresql"])
    for kind in storages:
        anchor = None
        for workers in counts:
            with tempfile.TemporaryDirectory() as folder:
                drop = None
                url = None
                if kind == "postgresql":
                    url, drop = _postgres_database(args.postgres)
                try:
                    wall = measure(url, Path(folder), workers, args.trials)
                finally:
                    if drop:
                        drop()
            per_minute = args.trials / wall * 60
            anchor = anchor or per_minute
            ratio = per_minute / anchor
            overhead_ms = (wall * workers - args.trials * TRIAL_SECONDS) / args.trials * 1000
            verdict = "ok" if ratio >= 0.8 * workers else "MISS"
            print(f"{kind:<10} {workers:>7} {wall:>8.1f} {per_minute:>10.1f} {ratio:>10.2f} "
                  f"{f'{0.8 * workers:.1f} {verdict}':>7} {overhead_ms:>17.0f}")


if __name__ == "__main__":
    main()
