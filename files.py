"""Writing a file atomically: a temporary file, then a rename, so a reader never sees half of it."""

import json
import os
from pathlib import Path


def write_json(path: Path, data) -> None:
    """Write JSON atomically: readers never see a half-written file."""
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write text atomically (a temporary file, then a rename); a failed write leaves no ``path`` and no temporary
    file behind, and its OSError names ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
