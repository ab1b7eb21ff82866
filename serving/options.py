"""What ``serve`` is started with, checked before the model loads: where it listens, who may call it, and the limits
every request runs under."""

import errno
import ipaddress
import math
import os
import socket
from dataclasses import dataclass

from smelt.errors import SmeltError

MIN_TOKEN_CHARS = 16  # a bearer token anyone on the network may guess at must not be short


@dataclass(kw_only=True)
class ServeOptions:
    run_dir: str
    more_run_dirs: tuple[str, ...] = ()  # several runs of one student base, each with its adapter (several_runs)
    task: str | None = None  # TASK as elsewhere: required for a run whose task is Python code
    lm: str | None = None
    device: str = "auto"
    api_base: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    threads: int = 8  # predictions running at once: the engine batches them
    token_env: str | None = None  # the name of the environment variable holding the bearer token
    max_request_bytes: int = 1_000_000
    timeout: float = 120.0  # seconds a request may wait for its answer, queueing included
    log: str | None = None  # a JSONL file: one line per request

    def __post_init__(self):
        if self.threads < 1:
            raise SmeltError(f"--threads {self.threads}: use 1 or more (predictions running at once)")
        if not 0 <= self.port <= 65535:
            raise SmeltError(f"--port {self.port}: use 1-65535 (or 0 for any free port)")
        if self.max_request_bytes < 1024:
            raise SmeltError(f"--max-request-bytes {self.max_request_bytes}: use 1024 or more")
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise SmeltError(f"--timeout {self.timeout:g}: use a finite number of seconds above 0, e.g. --timeout 120")

    @property
    def run_dirs(self) -> tuple[str, ...]:
        return (self.run_dir, *self.more_run_dirs)

    def token(self) -> str | None:
        """The bearer token of --token-env, read from the environment; required to listen beyond this machine."""
        if self.token_env is None:
            if not is_loopback(self.host):
                raise SmeltError(f"--host {self.host}: other machines could call the model; pass --token-env NAME "
                                 "with a bearer token in $NAME (or keep --host 127.0.0.1)")
            return None
        value = os.environ.get(self.token_env, "").strip()
        if not value:
            raise SmeltError(f"--token-env {self.token_env}: ${self.token_env} is not set or empty; export the token "
                             "there, e.g. export "
                             f"{self.token_env}=$(python -c 'import secrets; print(secrets.token_urlsafe())')")
        if len(value) < MIN_TOKEN_CHARS:
            raise SmeltError(f"--token-env {self.token_env}: the token in ${self.token_env} is shorter than "
                             f"{MIN_TOKEN_CHARS} characters; use a long random one (python -c 'import secrets; "
                             "print(secrets.token_urlsafe())')")
        return value


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is this machine's loopback (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, bound and listening now, so that a port in use is one line before the model
    loads (listening claims it: two serves started together would otherwise both bind it, SO_REUSEADDR, and the
    later one fail inside uvicorn). Connections made while the model loads wait for it."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError as exc:
        raise SmeltError(f"--host {host}: not an address of this machine ({exc.strerror or exc})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen()
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise SmeltError(f"--port {port}: already in use on {host} (another serve, or another program, listens "
                             "there); pass another --port N (0 picks a free one), or stop the other one") from None
        raise SmeltError(f"--host {host} --port {port}: {exc.strerror or exc}; pass another --port (0 picks a free "
                         "one)") from None
    sock.set_inheritable(True)
    return sock
