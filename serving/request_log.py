"""``serve --log FILE``: one JSON line per request (its route, status, inputs, outputs, latency and tokens), appended
and flushed as each request ends. Never a header (the bearer token travels in one) and never a registered secret
(every string passes through ``smelt.redaction``), so the file can be shared like a run's records."""

import json
import threading
import time
from pathlib import Path

from smelt.errors import SmeltError
from smelt.redaction import redact_strings


class RequestLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            raise SmeltError(f"--log {path}: a folder; pass a file path, e.g. --log serve.jsonl")
        try:
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise SmeltError(f"--log {path}: cannot be written ({exc.strerror or exc}); pass a file in a folder you "
                             "may write to") from None
        self._lock = threading.Lock()

    def write(self, route: str, status: int, latency_s: float, **fields) -> None:
        """One line: time, route, status, latency, then ``fields`` (inputs, outputs, usage, error...)."""
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "route": route, "status": status,
                  "latency_s": round(latency_s, 4), **fields}
        line = json.dumps(redact_strings(record), ensure_ascii=False) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
