"""The one exception type for mistakes a user can make.

The CLI prints a SmeltError as a single line (no traceback) and exits with status 2.
Messages name the file, line or option at fault and say what to do.
"""


class SmeltError(Exception):
    """A user-facing error: bad path, bad data line, unknown task or model, missing GPU..."""
