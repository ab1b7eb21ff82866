"""Where a sweep's study lives: an Optuna journal file (one machine), PostgreSQL (many), or SQLite (one process).

The journal file is Optuna's recommendation for several processes on one machine (file locks, no server).
PostgreSQL through Optuna's RDB storage lets workers on many machines share a study; its heartbeats let
the others notice a dead worker, fail its trial and run it again. SQLite is not safe for concurrent writers.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

import optuna

from smelt.errors import SmeltError
from smelt.redaction import redact, register_secret

JOURNAL_FILE = "study.journal"
# A trial lasts minutes to hours: keep pooled connections alive (pre-ping), recycle them before a server or
# firewall idles them out, and leave room for the heartbeat thread beside the trial's own calls.
POOL = {"pool_pre_ping": True, "pool_recycle": 300, "pool_size": 2, "max_overflow": 4}


def storage_kind(url: str | None) -> str:
    if url is None:
        return "journal"
    if url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        return "postgresql"
    if url.startswith("sqlite:///"):
        return "sqlite"
    raise SmeltError(f"--storage {redact(url)}: use postgresql://USER@HOST/DB (many machines), sqlite:///FILE "
                     "(one process), or leave it out for a journal file in the sweep's run directory")


def open_storage(url: str | None, run_dir: Path, *, heartbeat_s: int = 60, workers: int = 1, log=print):
    """The Optuna storage for ``--storage`` (None: the run directory's journal file). A password in the URL is
    registered as a secret: no line smelt prints or writes holds it."""
    kind = storage_kind(url)
    if url and "@" in url.split("://", 1)[-1]:
        userinfo = url.split("://", 1)[1].rpartition("@")[0]
        if ":" in userinfo:
            register_secret(userinfo.split(":", 1)[1])
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(run_dir / JOURNAL_FILE)))
    if kind == "sqlite":
        if workers > 1:
            raise SmeltError("--storage sqlite:/// is not safe for several workers (\"database is locked\"); "
                             "leave --storage out for a journal file, or use postgresql://")
        check_sqlite_file(url)
        log("[smelt] warning: SQLite storage is for one process only; concurrent workers on it are unsafe")
        return _rdb(url, heartbeat_s=None, engine_kwargs={},
                    advice=f"check that {sqlite_file(url)} is a study database Optuna wrote, or pass another file")
    try:
        import psycopg  # noqa: F401 - SQLAlchemy 2.1's default PostgreSQL driver
    except ImportError:
        raise SmeltError("--storage postgresql://: the PostgreSQL driver is not installed; run "
                         "`pip install -e \".[postgres]\"` (psycopg)") from None
    driver_url = "postgresql+psycopg://" + url.split("://", 1)[1]  # the driver smelt installs, whatever the default
    return _rdb(driver_url, heartbeat_s=heartbeat_s, engine_kwargs=POOL,
                advice="check the host, user, password and that the database exists (createdb NAME)")


def sqlite_file(url: str) -> Path:
    """The file of ``sqlite:///FILE`` (relative to the working folder; ``sqlite:////abs/path`` is absolute)."""
    return Path(url.removeprefix("sqlite:///").split("?", 1)[0])


def check_sqlite_file(url: str) -> None:
    """Fail in a moment, with the system's reason, where SQLite could not write the study file."""
    problem = _sqlite_problem(sqlite_file(url))
    if problem:
        reason, advice = problem
        raise SmeltError(f"--storage {redact(url)}: cannot write the SQLite file {sqlite_file(url)} ({reason}); "
                         f"{advice} (sqlite:////abs/path for an absolute one), or leave --storage out for a journal "
                         "file in the sweep's run directory")


def _sqlite_problem(path: Path) -> tuple[str, str] | None:
    """(why SQLite could not write ``path``, what to do), or None: its folder is missing or a file, it is a folder,
    or the folder (where SQLite also writes its journal) or the file is read-only or not ours to write."""
    if str(path) == ":memory:":
        return None
    writable = "pass a path in a folder you can write to"
    folder = path.parent.absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is a file, not a folder", writable
    if existing != folder:
        return f"no such folder {path.parent}", f"create the folder first (mkdir -p {path.parent}), or {writable}"
    if path.is_dir():
        return f"{path} is a folder", "pass the path of a file"
    try:
        with tempfile.TemporaryFile(dir=folder):  # removed as it closes: nothing is left behind
            pass
        if path.exists():
            os.close(os.open(path, os.O_RDWR))
    except OSError as exc:
        return f"{(exc.strerror or type(exc).__name__).lower()}: {path if path.exists() else path.parent}", writable
    return None


def _rdb(url: str, *, heartbeat_s: int | None, engine_kwargs: dict, advice: str):
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from sqlalchemy.exc import SQLAlchemyError

    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"
    heartbeat = {}
    if heartbeat_s is not None:
        # A trial whose worker has been silent for 2 heartbeats is failed and queued again (at most twice).
        heartbeat = {"heartbeat_interval": heartbeat_s, "grace_period": 2 * heartbeat_s + 1,
                     "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=2)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            rdb = RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
            # The cached wrapper Optuna puts around an RDB storage inside create_study: smelt's trial claims must
            # go through the same cache as the study's own calls.
            return optuna.storages.get_storage(rdb)
    except (SQLAlchemyError, ValueError) as exc:  # ValueError: a malformed URL (a port that is not a number)
        detail = redact(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0])
        raise SmeltError(f"--storage {redact(url)}: cannot open the study storage ({detail}); {advice}") from None


def quiet_optuna() -> None:
    """Optuna logs every trial at INFO; smelt prints its own one line per trial."""
    optuna.logging.set_verbosity(logging.WARNING)
