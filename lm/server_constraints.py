"""How a completion server (``completion_engine``) is handed a request's answer pattern (``completion_pattern``).

Each server names the pattern in its own field of ``POST /completions``:

    vLLM         ``"structured_outputs": {"regex": ...}`` (since 0.10.2; ``"guided_regex"`` before, removed in 0.12)
    SGLang       ``"regex": ...``
    llama.cpp    ``"grammar": ...``, the pattern as GBNF (``gbnf``; a task's pattern GBNF cannot say is not sent)

Which server answers is read once from its ``GET /models`` (``owned_by``: ``vllm``, ``sglang``, ``llamacpp``), and
vLLM's version from ``GET /version``. A server that is none of these (``transformers serve``) takes no pattern, and
vLLM ignores a field it does not know without a word: their answers are unconstrained, said once, and checked after
they are written. A server that refuses a pattern (a 4xx naming it) answers the same request again without it, and
every later request with that pattern goes without it, said once.
"""

import re
import threading

import httpx

from smelt.lm.completion_pattern import say_unconstrained
from smelt.lm.gbnf import gbnf_grammar

_STRUCTURED_OUTPUTS_SINCE = (0, 10, 2)  # vLLM's first version with "structured_outputs"


class ServerConstraints:
    """The fields that carry a pattern to one completion server, found on first use (thread-safe)."""

    def __init__(self, client: httpx.Client, api_base: str, model: str):
        self._client = client
        self._api_base = api_base.rstrip("/")
        self._model = model
        self._server: tuple[str | None, tuple[int, ...] | None] | None = None  # (owned_by, vLLM's version)
        self._refused: set[str] = set()
        self._lock = threading.Lock()

    def fields(self, pattern: str) -> dict:
        """The request body's fields for ``pattern``: {} where this server takes none (said once)."""
        with self._lock:
            if self._server is None:
                self._server = self._identify()
        owner, version = self._server
        if pattern in self._refused:
            return {}
        if owner == "vllm":
            if version is not None and version < _STRUCTURED_OUTPUTS_SINCE:
                return {"guided_regex": pattern}
            return {"structured_outputs": {"regex": pattern}}
        if owner == "sglang":
            return {"regex": pattern}
        if owner == "llamacpp":
            grammar = gbnf_grammar(pattern)
            if grammar is not None:
                return {"grammar": grammar}
            say_unconstrained(self._model, "llama.cpp's server takes a GBNF grammar, and this pattern has none: "
                                           f"{pattern[:80]!r}")
            return {}
        say_unconstrained(self._model, f"the server at {self._api_base} ({owner or 'unknown'}) takes no pattern "
                                       "smelt knows; vLLM, SGLang and llama.cpp's server do")
        return {}

    def refused(self, pattern: str, detail: str) -> None:
        """The server refused ``pattern``: from now on it goes unconstrained (said once)."""
        self._refused.add(pattern)
        say_unconstrained(self._model, f"the server refused the pattern: {detail[:160]}")

    def _identify(self) -> tuple[str | None, tuple[int, ...] | None]:
        """(the ``owned_by`` of the server's models, vLLM's version), each None where it cannot be read."""
        owner = None
        try:
            models = self._client.get(f"{self._api_base}/models", timeout=10).json().get("data") or []
            owners = {entry.get("owned_by") for entry in models if isinstance(entry, dict)}
            owner = next((name for name in ("vllm", "sglang", "llamacpp") if name in owners), None)
        except (httpx.HTTPError, ValueError, AttributeError):
            pass
        version = None
        if owner == "vllm":
            root = self._api_base.removesuffix("/v1")
            try:
                text = str(self._client.get(f"{root}/version", timeout=10).json().get("version", ""))
                numbers = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
                version = tuple(int(n or 0) for n in numbers.groups()) if numbers else None
            except (httpx.HTTPError, ValueError, AttributeError):
                pass
        return owner, version
