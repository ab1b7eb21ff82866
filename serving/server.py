"""``serve``: check the options, bind the port, load the run, then answer HTTP requests (uvicorn) until SIGTERM or
Ctrl-C, after which new requests are refused and those in flight finish."""

import asyncio
import time

import uvicorn

from smelt.lm.dspy_settings import configure_dspy
from smelt.redaction import register_secret
from smelt.serving.app import create_app
from smelt.serving.loading import load_served_run
from smelt.serving.options import ServeOptions, bind_socket
from smelt.serving.request_log import RequestLog
from smelt.serving.service import ServedProgram, ServedRuns
from smelt.serving.several_runs import load_several_runs, run_name
from smelt.serving.warm_up import warm_up


class _Server(uvicorn.Server):
    """uvicorn's server, telling the program to refuse new requests the moment a stop signal arrives, saying where
    it listens once it does, and ending ``serve`` normally after a graceful stop (uvicorn would raise the signal
    again once done, killing the process)."""

    def __init__(self, config: uvicorn.Config, served: ServedRuns, ready_line: str, log):
        super().__init__(config)
        self.served, self.ready_line, self.say = served, ready_line, log

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.say(self.ready_line)

    def handle_exit(self, sig, frame) -> None:
        self.served.stop_accepting()
        if not self.should_exit:
            self.say("[smelt] stopping: finishing the requests in flight, refusing new ones (again to force)")
        super().handle_exit(sig, frame)
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()

    async def shutdown(self, sockets=None) -> None:
        """Close the port, then keep open connections open while requests are in flight, so that one sent on a
        kept-alive connection meanwhile gets its 503 (uvicorn would close an idle connection at once); then
        uvicorn's own graceful stop."""
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        deadline = time.monotonic() + self.config.timeout_graceful_shutdown
        while self.served.in_flight and not self.force_exit and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await super().shutdown(sockets=sockets)


def serve(options: ServeOptions, log) -> dict:
    """Serve the run (or several: ``several_runs``) until stopped; returns what was served (``ServedRuns.stats``)."""
    token = options.token()  # before anything loads: a non-loopback --host needs one
    if token:
        register_secret(token)  # never printed or logged, wherever it might appear
    request_log = RequestLog(options.log, run_dir=options.run_dir, warn=log) if options.log else None
    sock = bind_socket(options.host, options.port)
    port = sock.getsockname()[1]
    configure_dspy(threads=options.threads)
    load = dict(task=options.task, lm=options.lm, device=options.device, api_base=options.api_base,
                timeout=options.timeout, log=log)
    if options.more_run_dirs:
        loaded_runs = load_several_runs(options.run_dirs, **load)
    else:
        loaded_runs = {run_name(options.run_dir): load_served_run(options.run_dir, **load)}
    for loaded in loaded_runs.values():
        warm_up(loaded, log)
    served = ServedRuns({name: ServedProgram(loaded, threads=options.threads, timeout=options.timeout)
                         for name, loaded in loaded_runs.items()},
                        dict(zip(loaded_runs, options.run_dirs, strict=True)))
    app = create_app(served, token=token, max_request_bytes=options.max_request_bytes,
                     listening=(options.host, port), request_log=request_log)
    host = f"[{options.host}]" if ":" in options.host else options.host
    loaded = served.first.loaded
    if served.several:
        what = ", ".join(f"{name} ({program.loaded.task.name})" for name, program in served.programs.items())
        routes = "/v1/RUN_NAME/predict, /v1/chat/completions with \"model\": RUN_NAME, /v1/models"
    else:
        what, routes = f"{loaded.task.name} ({loaded.run_dir})", "/v1/predict, /v1/chat/completions"
    ready = (f"[smelt] serving {what} with {loaded.lm.spec.raw} on http://{host}:{port}/ (the try-it page; API: "
             f"{routes}, /openapi.json)" + ("; bearer token required" if token else ""))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=int(options.timeout) + 10)
    server = _Server(config, served, ready, log)
    try:
        server.run(sockets=[sock])
    finally:
        served.stop_accepting()
        served.close()
        if request_log is not None:
            request_log.close()
        sock.close()
    stats = served.stats()
    log(f"[smelt] stopped: {stats['answered']} requests answered, {stats['failed']} failed")
    return stats
