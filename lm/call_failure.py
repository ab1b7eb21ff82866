"""A model call that failed, said in one line: what failed and what to check (never a password)."""

from smelt.errors import describe_exception
from smelt.redaction import redact_text


def model_call_failed(spec: str, exc: Exception) -> str:
    """One line for a failed model call: the error's type and first 300 characters, and the one it was raised from
    (no password), and what to check."""
    detail = " ".join(redact_text(describe_exception(exc)).split())
    return (f"the call to {spec} failed: {detail}; check the model spec, --api-base, the API key and that the server "
            "is up")
