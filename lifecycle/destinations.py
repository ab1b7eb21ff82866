"""Where a finished run's server models are called now: only where the user says.

A run directory is data. Its manifest records the model each role ran on and the server it was called on, but a
manifest can be edited, copied or handed over, so what it records never decides on its own where a user's inputs
and API key go. A command that takes a run (``eval``, ``run``, ``serve``, ``distill --teacher RUN``, every
``--resume``) calls a server or hosted model only where the user names it:

- ``--api-base URL``       that server (equal to the recorded one or not);
- ``--api-base recorded``  the server the run recorded for each model (the provider's own API where it recorded
                           none): the user's explicit opt-in, printed model by model before the first call;
- ``--lm SPEC``            another model, on the provider's own API its spec names (``openai/...``), as in
                           ``compile --lm``; the run's server is not reused for it.

Anything else is refused in one line that gives the command to type. In-process models (``gemma-3-270m``,
``hf:...``, and ``gguf:...``, whose llama.cpp server smelt starts inside the process on 127.0.0.1) send nothing
anywhere and need none of this.
"""

import shlex
import sys
from pathlib import Path

from smelt.errors import SmeltError
from smelt.lm.credentials import API_KEY_ENV, environment_key, strip_userinfo
from smelt.lm.specs import parse_spec
from smelt.redaction import REDACTED, redact, scrub_argv

RECORDED = "recorded"  # --api-base recorded: the user's opt-in to a run's recorded servers
PROVIDER_API = "the provider's own API"  # where a hosted model's requests go without an API base


def is_server_model(spec: object, option: str = "the run's model") -> bool:
    """True for a spec whose calls leave this process (a server or a hosted API)."""
    return isinstance(spec, str) and not parse_spec(spec, option).local


def recorded_base(record: dict, manifest: dict) -> str | None:
    """A model's recorded API base: its own (``models.<role>.api_base``), or, in a manifest written before models
    recorded theirs, the run's --api-base."""
    if "api_base" in record:
        return record["api_base"]
    return (manifest.get("options") or {}).get("api_base")


def run_api_base(spec: str | None, given: str | None, recorded: str | None, *, role: str, run_dir: Path,
                 named_by_user: bool = False, log=print) -> str | None:
    """The API base a run's ``role`` model (``spec``) is called on now (None: the provider's own API), by the rule
    of the module docstring. ``given`` is --api-base; ``named_by_user`` says the user typed ``spec`` (--lm).
    ``log`` hears where each server model's requests go, in one line (no password)."""
    if not is_server_model(spec, f"the run's {role}"):
        return None if given == RECORDED else given
    if given and given != RECORDED:
        log(f"[smelt] {role} {spec}: API base {redact(given)} (--api-base)")
        return given
    if given == RECORDED:
        return _recorded_destination(spec, recorded, role=role, run_dir=run_dir, log=log)
    if named_by_user and not recorded:
        log(f"[smelt] {role} {spec}: the provider's own API (--lm {spec}, no --api-base)")
        return None
    raise SmeltError(destination_refused(run_dir, {f"{role} {spec}": recorded}))


def _recorded_destination(spec: str, recorded: str | None, *, role: str, run_dir: Path, log) -> str | None:
    if not recorded:
        log(f"[smelt] {role} {spec}: the provider's own API (--api-base recorded; {run_dir} recorded no server)")
        return None
    if REDACTED in recorded:  # the password is never recorded: it comes from $SMELT_API_KEY, or --api-base again
        base = strip_userinfo(recorded)
        if REDACTED in base or not environment_key():
            raise SmeltError(f"{run_dir}: its {role} {spec} ran on {recorded}, whose password is not recorded; pass "
                             f"--api-base again with it (or set {API_KEY_ENV} to the key)")
        log(f"[smelt] {role} {spec}: the run's API base {base} (--api-base recorded), with the key in "
            f"${API_KEY_ENV}")
        return base
    log(f"[smelt] {role} {spec}: the run's API base {recorded} (--api-base recorded)")
    return recorded


def destination_refused(run_dir: Path | str, models: dict[str, str | None]) -> str:
    """The one line that refuses to call ``models`` ({"judge openai/x": recorded API base or None}) where only
    ``run_dir`` names them, with the command that opts in."""
    where = "; ".join(f"{name} on {base or PROVIDER_API}" for name, base in models.items())
    return (f"{run_dir} names where its models are called ({where}), and a run directory never chooses where your "
            f"data and keys go: name the server with --api-base URL, or use the recorded one with `{_again()}`")


def _again() -> str:
    """The command being run, with ``--api-base recorded`` added (passwords redacted)."""
    argv = scrub_argv(sys.argv)
    program = Path(argv[0]).name if argv else ""
    head = "python cli.py" if program == "cli.py" else "smelt" if program == "smelt" else None
    if head is None:  # a library call: no command line to repeat
        return "--api-base recorded"
    return " ".join([head, *(shlex.quote(arg) for arg in argv[1:]), "--api-base", RECORDED])
