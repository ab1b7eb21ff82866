"""One line for the user on stderr: secrets redacted (``smelt.redaction``), printed above any progress bar."""

import sys

from tqdm import tqdm

from smelt.redaction import redact_text


def to_stderr(message: str) -> None:
    tqdm.write(redact_text(message), file=sys.stderr)
