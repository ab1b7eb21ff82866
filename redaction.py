"""What may be printed or recorded: URLs without their passwords, options and command lines without secrets, and
no known secret anywhere.

A run directory is shared, archived and attached to bug reports, so nothing in it may carry a credential: a
password can sit in a URL (``--api-base https://user:token@host``, ``--storage postgresql://u:pw@db/x``), in an
option, or (an API key) in the environment. Every credential smelt reads is registered here
(``register_secret``), and ``redact_text`` replaces it wherever it appears, inside a URL or not: the file writers
(``smelt.files``), the evaluation records and the command line's output all pass through it.
"""

import re
import threading
from urllib.parse import unquote

_SECRET_NAME = re.compile(r"key|token|secret|password|passwd", re.IGNORECASE)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"']+")
REDACTED = "***"
# A registered secret shorter than this is not searched for in free text (it would garble every word holding
# it); inside a URL's user part it is redacted whatever its length.
MIN_SECRET_CHARS = 4

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember a credential this process uses (an API key, a URL's password): ``redact_text`` hides it from now
    on, wherever it appears. Its percent-decoded and percent-encoded spellings are registered too."""
    if not value or len(value) < MIN_SECRET_CHARS or value == REDACTED:
        return
    from urllib.parse import quote

    with _secrets_lock:
        _secrets.update(v for v in {value, unquote(value), quote(value, safe="")} if len(v) >= MIN_SECRET_CHARS)


def register_url_secrets(text: str) -> None:
    """Register the password of every URL in ``text`` (an http(s) URL's user part without one is a token: all of
    it), so that it is hidden even where it later appears without its URL (a library's error message)."""
    for match in _URL.finditer(text):
        scheme, rest = match.group(0).split("://", 1)
        if "@" not in rest.split("/", 1)[0]:
            continue
        userinfo = rest.split("/", 1)[0].rpartition("@")[0]
        user, colon, password = userinfo.partition(":")
        register_secret(password if colon else user if _is_http(scheme) else None)


def _is_http(scheme: str) -> bool:
    return scheme.lower() in ("http", "https")


def redact(url: str) -> str:
    """A URL as it may be printed or recorded: no password, in the user part or the query. An http(s) URL's user
    part without a password (``https://TOKEN@host``) is a token (``smelt.lm.credentials``): all of it goes."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    if "@" in rest.split("/", 1)[0] or "@" in rest.split("?", 1)[0]:
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        if ":" in credentials:
            rest = f"{user}:{REDACTED}@{host}"
        else:
            rest = f"{REDACTED}@{host}" if _is_http(scheme) else f"{user}@{host}"
    rest = re.sub(r"(?i)(password|passwd|pwd|token|api_key|key)=[^&]*", rf"\1={REDACTED}", rest)
    return f"{scheme}://{rest}"


def redact_text(text: str) -> str:
    """Every URL inside a piece of text redacted (an error message, a command-line argument), and every registered
    secret replaced by ``***``."""
    text = _URL.sub(lambda match: redact(match.group(0)), text)
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)  # a longer secret first: it may hold a shorter one
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_strings(value):
    """``value`` with every string in it (dict keys too, recursively) passed through ``redact_text``; unlike
    ``scrub``, no key is dropped: for records and summaries, whose keys name numbers (``prompt_tokens``)."""
    if isinstance(value, dict):
        return {redact_strings(k) if isinstance(k, str) else k: redact_strings(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_strings(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


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
