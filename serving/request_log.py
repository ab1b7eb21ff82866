"""``serve --log FILE``: one JSON line per request (its route, status, inputs, outputs, latency and tokens), appended
and flushed as each request ends. Never a header (the bearer token travels in one) and never a registered secret
(every string passes through ``smelt.redaction``), so the file can be shared like a run's records. Never a file in
a run directory (a line appended to its program.json would break the run), and a write that fails (a full disk) is
one warning, after which requests go on unlogged."""

import json
import threading
import time
from pathlib import Path

from smelt.errors import SmeltError
from smelt.lifecycle import enclosing_run
from smelt.redaction import redact_strings


class RequestLog:
    def __init__(self, path: str | Path, *, run_dir: str | Path, warn):
        self.path = Path(path)
        self.warn = warn  # one line on stderr
        if self.path.is_dir():
            raise SmeltError(f"--log {path}: a folder; pass a file path, e.g. --log serve.jsonl")
        _refuse_run_files(self.path, Path(run_dir), path)
        try:
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise SmeltError(f"--log {path}: cannot be written ({exc.strerror or exc}); pass a file in a folder you "
                             "may write to") from None
        self._lock = threading.Lock()
        self._failed = False

    def write(self, route: str, status: int, latency_s: float, **fields) -> None:
        """One line: time, route, status, latency, then ``fields`` (inputs, outputs, usage, error...)."""
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "route": route, "status": status,
                  "latency_s": round(latency_s, 4), **fields}
        line = json.dumps(redact_strings(record), ensure_ascii=False) + "\n"
        with self._lock:
            if self._failed:
                return
            try:
                self._file.write(line)
                self._file.flush()
            except OSError as exc:  # the request still gets its answer
                self._failed = True
                self.warn(f"[smelt] warning: --log {self.path}: cannot be written ({exc.strerror or exc}); requests "
                          "are answered but no longer logged")

    def close(self) -> None:
        with self._lock:
            try:
                self._file.close()
            except OSError:  # what could not be flushed was said when it failed
                pass


def _refuse_run_files(path: Path, run_dir: Path, given) -> None:
    """A log inside a run directory (a folder above it holds a manifest.json), or inside the run served, is
    refused: serve never writes into a run."""
    target = path.resolve()  # a link into a run is the run's file
    run = enclosing_run(target.parent)
    if run is None and target.is_relative_to(run_dir.resolve()):
        run = run_dir
    if run is not None:
        raise SmeltError(f"--log {given}: {target} is inside run {run}, and serve never writes into a run directory; "
                         "log elsewhere (e.g. --log serve.jsonl)")
