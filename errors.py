"""The one exception type for mistakes a user can make.

The CLI prints a SmeltError as a single line (no traceback) and exits with status 2.
Messages name the file, line or option at fault and say what to do.
"""

import errno
import os
import reprlib


class SmeltError(Exception):
    """A user-facing error: bad path, bad data line, unknown task or model, missing GPU..."""


class ModelCallsFailed(SmeltError):
    """Every model call of a scored split failed: the setup is broken (a wrong --api-base, a server that is down,
    a missing key), not the configuration being tried, so a sweep stops instead of failing trial after trial."""


# What a user can do about each file-system error smelt may meet while writing a run.
_FILESYSTEM_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space, or pass --runs-root on another disk",
    errno.EDQUOT: "the disk quota is used up: free some space, or pass --runs-root on another disk",
    errno.EFBIG: "the file grew past what the file system allows: pass --runs-root on another disk",
    errno.EROFS: "the file system is read-only: pass --runs-root on a writable disk",
    errno.EACCES: "no permission to write there: pass --runs-root in a folder you may write to",
    errno.EPERM: "the operation is not permitted there: pass --runs-root in a folder you may write to",
    errno.ENOTDIR: "a part of that path is a file, not a folder: pass --runs-root as a folder",
    errno.EISDIR: "that path is a folder where a file was expected",
    errno.ENAMETOOLONG: "the path is too long: pass a shorter --runs-root",
    errno.EIO: "the disk reported an input/output error: check the disk, or pass --runs-root on another one",
}


def filesystem_error(exc: OSError) -> SmeltError | None:
    """A file-system error as one line naming the path and what its errno means; None for other OSErrors (a
    refused connection, say), which are not the disk's."""
    advice = _FILESYSTEM_ADVICE.get(exc.errno)
    if advice is None:
        return None
    path = exc.filename if exc.filename is not None else "a file of the run"
    also = f" (and {exc.filename2})" if exc.filename2 else ""
    return SmeltError(f"{path}{also}: {os.strerror(exc.errno)} ({errno.errorcode[exc.errno]}); {advice}")


def describe_exception(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` (its first ``limit`` characters) and, when it says more, the innermost exception it was
    raised from: a server's "Connection error." then reads "... (ConnectError: [Errno 111] Connection refused)"."""
    text = f"{type(exc).__name__}: {str(exc)[:limit]}"
    root, seen = exc, {id(exc)}
    while (cause := root.__cause__ or root.__context__) is not None and id(cause) not in seen:
        seen.add(id(cause))
        root = cause
    detail = str(root).strip()
    if root is not exc and detail and detail not in text:
        text += f" ({type(root).__name__}: {detail[:200]})"
    return text


def _short_repr() -> reprlib.Repr:
    short = reprlib.Repr()
    short.maxlevel, short.maxdict, short.maxlist, short.maxtuple, short.maxset = 3, 4, 4, 4, 4
    short.maxfrozenset, short.maxdeque, short.maxarray, short.maxother = 4, 4, 4, 40
    short.maxstring, short.maxlong = 60, 40
    return short


_SHORT = _short_repr()


def shown(value, limit: int = 80) -> str:
    """``repr(value)`` for an error message, at most ``limit`` characters: nested values are walked only a few
    levels and items deep, so a value that is huge once expanded (a YAML alias bomb, a long line) costs nothing."""
    try:
        text = _SHORT.repr(value)
    except Exception:  # an int past Python's digit limit, an object whose repr raises
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
