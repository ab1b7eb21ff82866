"""Writing a file atomically: a temporary file, then a rename, so a reader never sees half of it; and never a
secret in it (every string passes through ``smelt.redaction.redact_text``)."""

import json
import math
import os
from pathlib import Path

from smelt.redaction import redact_strings, redact_text


def write_json(path: Path, data) -> None:
    """Write JSON atomically: readers never see a half-written file. URLs lose their passwords and registered
    secrets are replaced (``smelt.redaction``); a NaN or infinite number is written as null (JSON has neither, and
    strict readers refuse the ``NaN`` Python would write)."""
    write_text(path, json.dumps(finite(redact_strings(data)), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def finite(value):
    """``value`` with every NaN or infinite float in it (recursively) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def write_text(path: Path, text: str) -> None:
    """Write text atomically (a temporary file, then a rename), with URLs' passwords and registered secrets
    redacted; a failed write leaves no ``path`` and no temporary file behind, and its OSError names ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(redact_text(text), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
