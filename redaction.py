"""What may be printed or recorded: URLs without their passwords, options and command lines without secrets.

A run directory is shared, archived and attached to bug reports, so nothing in it may carry a credential:
API keys are read by LiteLLM from the environment and never pass through here, but a password can sit in
a URL (``--api-base https://user:token@host``, ``--storage postgresql://u:pw@db/x``) or in an option.
"""

import re

_SECRET_NAME = re.compile(r"key|token|secret|password|passwd", re.IGNORECASE)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"']+")
REDACTED = "***"


def redact(url: str) -> str:
    """A URL as it may be printed or recorded: no password, in the user part or the query."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    if "@" in rest.split("/", 1)[0] or "@" in rest.split("?", 1)[0]:
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        rest = f"{user}:{REDACTED}@{host}" if ":" in credentials else f"{user}@{host}"
    rest = re.sub(r"(?i)(password|passwd|pwd|token|api_key|key)=[^&]*", rf"\1={REDACTED}", rest)
    return f"{scheme}://{rest}"


def redact_text(text: str) -> str:
    """Every URL inside a piece of text redacted (an error message, a command-line argument)."""
    return _URL.sub(lambda match: redact(match.group(0)), text)


def scrub(value):
    """Options as recorded: keys that name a credential dropped, URLs in every string redacted (recursively)."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if not _SECRET_NAME.search(str(k))}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def scrub_argv(argv: list[str]) -> list[str]:
    """A command line as recorded: URLs redacted, and the value of any option named like a credential hidden
    (``--api-key X``, ``--token=X``)."""
    out, hide_next = [], False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        name, eq, _ = arg.partition("=")
        if name.startswith("-") and _SECRET_NAME.search(name):
            if eq:
                out.append(f"{name}={REDACTED}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append(redact_text(arg))
    return out
