"""Where a server model's requests go, and with which key: ``--api-base`` split into the URL sent on and the
credential in its user part, or the key from the environment.

- ``https://USER:TOKEN@host/v1``  the key is TOKEN (the password part; the user name is not sent: OpenAI-compatible
                                  servers read a bearer token, ``Authorization: Bearer TOKEN``)
- ``https://TOKEN@host/v1``       the key is TOKEN (the whole user part)
- ``https://host/v1``             the key is ``$SMELT_API_KEY`` when set; else the provider's own variable, read
                                  by LiteLLM (``OPENAI_API_KEY``, ...); else none: the placeholder ``EMPTY`` is sent
                                  (as vLLM's docs do), which a server without authentication ignores and one with it
                                  refuses (401), instead of LiteLLM refusing to send the request at all
- no ``--api-base``               the provider's own API and variable; ``SMELT_API_KEY`` is not sent there (it is
                                  the key of your own server, not of a hosted API)

The user part never reaches LiteLLM as part of the URL (it would be taken for the host name), and every key is
registered with ``smelt.redaction``, so that no file smelt writes and no line it prints holds it. A URL whose
password was redacted (``***``, as a manifest records it) takes its key from ``$SMELT_API_KEY``, or is refused:
its password must be given again.
"""

import os
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

from smelt.errors import SmeltError
from smelt.log import to_stderr
from smelt.redaction import REDACTED, redact, register_secret

API_KEY_ENV = "SMELT_API_KEY"
NO_KEY = "EMPTY"  # what a server that takes no key is sent (LiteLLM's OpenAI client will not send a request without)


@dataclass(frozen=True)
class Endpoint:
    """What a server model's requests are sent with: the URL (no user part) and the key (None: the provider's
    own environment variable, read by LiteLLM or DSPy)."""

    api_base: str | None
    api_key: str | None


def strip_userinfo(url: str) -> str:
    """``url`` without its user part: ``https://u:p@host:8000/v1`` -> ``https://host:8000/v1``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def userinfo_key(url: str) -> str | None:
    """The key in ``url``'s user part: the password, or the whole user part when it has none; percent-decoded."""
    netloc = urlsplit(url).netloc
    if "@" not in netloc:
        return None
    userinfo = netloc.rpartition("@")[0]
    user, colon, password = userinfo.partition(":")
    raw = password if colon else user
    register_secret(raw)  # as typed, percent-encoded or not
    return unquote(raw) or None


def environment_key() -> str | None:
    """``$SMELT_API_KEY``, registered as a secret; None when unset or empty."""
    key = os.environ.get(API_KEY_ENV) or None
    register_secret(key)
    return key


def endpoint(api_base: str | None, provider: str | None = None, option: str = "--api-base") -> Endpoint:
    """The URL and key for a server model (see the module docstring). ``provider`` (``openai`` of ``openai/...``)
    names the environment variable a hosted API's key is read from, registered as a secret too."""
    provider_key = os.environ.get(f"{provider.upper()}_API_KEY") if provider else None
    register_secret(provider_key)
    if not api_base:
        if provider_key:
            say_where_the_key_goes(f"{provider.upper()}_API_KEY", f"{provider}'s own API")
        return Endpoint(None, None)
    if api_base == "recorded":
        raise SmeltError(f"{option} recorded: only a command that takes a run (eval, run, serve, distill --teacher "
                         "RUN, --resume) has a recorded API base; pass the server's URL, e.g. http://127.0.0.1:8000/v1")
    if "://" not in api_base:
        raise SmeltError(f"{option} {redact(api_base)}: not a URL; pass the server's address, e.g. "
                         "http://127.0.0.1:8000/v1")
    key = userinfo_key(api_base)
    if key == REDACTED:  # a recorded URL: its password is not there, the key may be in the environment
        key = environment_key()
        if key is None:
            raise SmeltError(f"{option} {redact(api_base)}: its password was redacted (passwords are never "
                             f"recorded); pass --api-base again with it, or set {API_KEY_ENV} to the key")
    if REDACTED in strip_userinfo(api_base):
        raise SmeltError(f"{option} {redact(api_base)}: a secret in it was redacted (secrets are never recorded); "
                         "pass --api-base again with it")
    url = strip_userinfo(api_base)
    if not key and environment_key():
        key = environment_key()
        say_where_the_key_goes(API_KEY_ENV, url)
    elif not key and provider_key:
        say_where_the_key_goes(f"{provider.upper()}_API_KEY", url)
    return Endpoint(url, key or (None if provider_key else NO_KEY))


_told: set[tuple[str, str]] = set()


def say_where_the_key_goes(variable: str, destination: str) -> None:
    """One line on stderr, once per process for each variable and destination, before the first call that sends
    the key an environment variable holds: the user sees where it goes (never the key)."""
    if (variable, destination) not in _told:
        _told.add((variable, destination))
        to_stderr(f"[smelt] the key in ${variable} is sent to {redact(destination)}")
