"""Real servers for the tests: ``transformers serve`` on the embedded model's weights (the folder smelt converts them
into), behind a small counting proxy that records how many requests were in flight at once; and smelt's own
``serve`` on a run directory."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class InFlightProxy:
    """A TCP relay in front of a server: ``most_in_flight`` is the most requests sent and not yet answered at one
    moment (a connection is busy from its request's first byte to its reply's first byte)."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests = 0
        self.most_in_flight = 0
        self._busy: set[int] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, asking: bool) -> None:
        key = id(source if asking else sink)
        try:
            while data := source.recv(65536):
                with self._lock:
                    if asking and key not in self._busy:
                        self._busy.add(key)
                        self.requests += 1
                        self.most_in_flight = max(self.most_in_flight, len(self._busy))
                    elif not asking:
                        self._busy.discard(key)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


class TransformersServer:
    """``transformers serve FOLDER`` on a free port; ``url`` is its /v1 base, reached through
    an ``InFlightProxy``; ``model`` the name it serves (the folder)."""

    def __init__(self, folder: Path, log: Path):
        self.model = str(folder)
        self.port = free_port()
        executable = Path(sys.executable).with_name("transformers")
        self._log = log.open("w")
        self.process = subprocess.Popen(
            # No --continuous-batching: on a CPU its paged cache took 13 GB of RAM for this 270M model.
            [str(executable), "serve", self.model, "--port", str(self.port), "--host", "127.0.0.1"],
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        self._wait_until_up(log)
        self.proxy = InFlightProxy(self.port)
        self.url = f"http://127.0.0.1:{self.proxy.port}/v1"

    def _wait_until_up(self, log: Path, timeout_s: float = 240) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"transformers serve exited: {log.read_text()[-2000:]}")
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/v1/models", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(1)
        raise RuntimeError(f"transformers serve did not start in {timeout_s} s: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.proxy.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


class SmeltServe:
    """``python cli.py serve ...`` in a subprocess on a free port (--port 0; the port is read from its ready line)."""

    def __init__(self, *args: str, env: dict | None = None):
        self.process = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "serve", *args, "--port", "0"],
                                        cwd=ROOT, env=env or {**os.environ, "HF_HUB_OFFLINE": "1"},
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(300) or self.process.poll() is not None:
            self.stop()
            raise AssertionError("serve did not start:\n" + self.output)
        self.url = re.search(r"on (http://127\.0\.0\.1:\d+)/", self.output).group(1)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            if "[smelt] serving" in line:
                self._ready.set()
        self._ready.set()  # it exited

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=300, **kwargs)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)


def serve_error_line(*args: str, env: dict) -> str:
    """``cli.py serve ARGS`` refused as a user's mistake: exit 2, no traceback, and the one ``error:`` line."""
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "serve", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]
