"""What a request must pass before the app sees it, as ASGI middleware: without a token, a Host header naming this
server (421: a web page on a name rebound to 127.0.0.1 cannot call it); with one, the bearer token (401); then the
size limit (413; the body is read at most up to --max-request-bytes, whether or not it declares its length)."""

import hmac
import ipaddress
import json

OPEN_PATHS = ("/", "/healthz")  # the try-it page (it asks for the token itself) and the health check


async def send_error(send, status: int, message: str, kind: str, headers: tuple = ()) -> None:
    """A JSON error reply: {"error": {"message": ..., "type": ...}}, as OpenAI's API shapes errors."""
    body = json.dumps({"error": {"message": message, "type": kind}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


def local_hosts(host: str, port: int) -> frozenset[bytes]:
    """The Host headers naming a server on loopback ``host``:``port``: 127.0.0.1, localhost, [::1] or ``host``
    itself, with the port; without it only for port 80, where a browser leaves it out."""
    try:
        address = ipaddress.ip_address(host)
        host = f"[{address.compressed}]" if address.version == 6 else address.compressed
    except ValueError:
        pass
    names = {"127.0.0.1", "localhost", "[::1]", host.lower()}
    return frozenset(h.encode() for h in {f"{name}:{port}" for name in names} | (names if port == 80 else set()))


class LocalHostOnly:
    """Without a token, a request must name this server in its Host header (``local_hosts``), or it is a 421: a
    web page whose name an attacker's DNS points at 127.0.0.1 afterwards (DNS rebinding) sends that name."""

    def __init__(self, app, host: str, port: int):
        self.app = app
        self.hosts = local_hosts(host, port)
        self.example = f"127.0.0.1:{port}"

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and dict(scope["headers"]).get(b"host", b"").lower() not in self.hosts:
            await send_error(send, 421, f"this server answers only requests addressed to it (Host: {self.example}, "
                                        "or localhost or [::1] on that port); to call it by another name, start it "
                                        "with --token-env", "misdirected_request", ((b"connection", b"close"),))
            return
        await self.app(scope, receive, send)


class BearerToken:
    """Every path but ``OPEN_PATHS`` needs ``Authorization: Bearer <token>`` (the scheme in any case, RFC 7235),
    the token compared in constant time."""

    def __init__(self, app, token: str):
        self.app = app
        self._expected = token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            scheme, _, given = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
            given = given.lstrip(b" ")
            if not (hmac.compare_digest(given, self._expected) and scheme.lower() == b"bearer"):
                await send_error(send, 401, "this server needs a bearer token: send the header Authorization: "
                                            "Bearer <token> (the token is in the variable named by --token-env)",
                                 "unauthorized", ((b"www-authenticate", b"Bearer"),))
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """A request body over ``max_bytes`` is refused with 413, before the app parses it."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(send)
        body, more = b"", True
        while more:  # read it all here (bounded), so that a body without a declared length is held to the limit too
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                return await self._refuse(send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send):
        await send_error(send, 413, f"the request is larger than {self.max_bytes:,} bytes (--max-request-bytes); "
                                    "send shorter inputs, or start the server with a larger limit",
                         "request_too_large")
