"""DSPy's response cache, keyed by the server too.

DSPy leaves ``api_base`` out of a cached response's key (``dspy.clients.execution.IGNORED_CACHE_KEYS``), so an
answer cached from one server would answer a call meant for another, or for a server that is down: the user's
--api-base would be ignored without a word. smelt puts the server back into the key; the API key stays out of it
(it never reaches the cache).
"""

_SERVER_KEYS = ("api_base", "base_url")


def key_responses_by_server() -> None:
    """Make DSPy's response-cache key hold the request's API base (idempotent; DSPy reads the list per call)."""
    from dspy.clients import execution

    ignored = getattr(execution, "IGNORED_CACHE_KEYS", None)
    if isinstance(ignored, list):
        ignored[:] = [name for name in ignored if name not in _SERVER_KEYS]
