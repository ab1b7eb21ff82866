"""The FastAPI app of ``serve``: its routes, and the error replies they give.

    GET  /                      the try-it page (page.html)
    GET  /healthz               ok or draining, and what was served (requests, tokens, the engine's decode steps)
    GET  /v1/program            the task and its fields, the program, the model, the run and its measured scores
    POST /v1/predict            the task's inputs -> its outputs, latency, tokens (and passages, for rag_qa)
    POST /v1/chat/completions   the served model itself, OpenAI-compatible (streamed on request)
    GET  /v1/models             the one model served, as OpenAI lists models

Several runs served together (``several_runs``) each answer under their name: /v1/NAME/program and
/v1/NAME/predict, and ``"model": NAME`` in /v1/chat/completions (/v1/models lists the names); /v1/predict and
/v1/program then say, in one line, to name one. The try-it page tries the first.

A mistake in a request is a 422 naming the field (FastAPI's ``detail`` list); a failed model call a 502 with one
line; a request after SIGTERM a 503; one past --timeout a 504. The server stays up through all of them."""

import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

from smelt.serving.chat import ChatRequest, complete, sse_chunks, stream_events
from smelt.serving.guards import BearerToken, BodyLimit, LocalHostOnly
from smelt.serving.loading import measured_scores, model_id, model_summary, program_summary
from smelt.serving.prediction import RequestFailed, check_fields, predict
from smelt.serving.request_log import RequestLog
from smelt.serving.schema import input_fields, output_fields, request_model, response_model
from smelt.serving.service import ServedProgram, ServedRuns

# The page runs its own inline script and calls only this server: nothing from elsewhere may load.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                               "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_ERROR_TYPES = {502: "model_error", 503: "unavailable", 504: "timeout"}

Log = Callable[..., None]  # (route, status, started, **fields): one line of the request log, if any


def create_app(runs: ServedRuns, *, token: str | None, max_request_bytes: int, listening: tuple[str, int],
               request_log: RequestLog | None = None) -> FastAPI:
    """The app serving ``runs``; ``token`` (if any) is required on every route but the page and /healthz; without
    one, every route requires a Host header naming the address it is ``listening`` on (host, port)."""
    tasks = {program.loaded.task.name: program.loaded.task for program in runs.programs.values()}
    app = FastAPI(title=f"smelt serve: {', '.join(tasks)}", docs_url=None, redoc_url=None,
                  description=next(iter(tasks.values())).description if len(tasks) == 1 else None)

    def log(route: str, status: int, started: float, **fields) -> None:
        if request_log is not None:
            request_log.write(route, status, time.perf_counter() - started, **fields)

    _add_error_replies(app, log)
    _add_page_and_health(app, runs)
    for name, served in runs.programs.items():
        prefix = f"/v1/{name}" if runs.several else "/v1"
        inputs_model = request_model(served.loaded.task)  # one class: the body of predict, the fields program lists
        _add_program_route(app, served, runs.run_dirs[name], inputs_model, prefix)
        _add_predict_route(app, served, inputs_model, log, prefix)
    if runs.several:
        _add_name_one_routes(app, list(runs.programs))
    _add_chat_routes(app, runs, log)
    app.add_middleware(BodyLimit, max_bytes=max_request_bytes)
    if token is not None:
        app.add_middleware(BearerToken, token=token)  # added last: checked first, before a body is read
    else:
        app.add_middleware(LocalHostOnly, host=listening[0], port=listening[1])
    return app


def _add_error_replies(app: FastAPI, log: Log) -> None:
    @app.exception_handler(RequestFailed)
    async def request_failed(request: Request, exc: RequestFailed):
        if exc.status == 422:
            return _validation_reply([{"type": "value_error", "loc": ["body", *([exc.field] if exc.field else [])],
                                       "msg": exc.message}])
        return JSONResponse({"error": {"message": exc.message, "type": _ERROR_TYPES.get(exc.status, "error")}},
                            status_code=exc.status, headers={"Connection": "close"} if exc.status == 503 else None)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        # Without the rejected "input": a missing field would echo the whole request back.
        errors = [{"type": e.get("type"), "loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
        log(request.url.path, 422, time.perf_counter(), error="; ".join(_describe(e) for e in errors))
        return _validation_reply(errors)


def _add_page_and_health(app: FastAPI, runs: ServedRuns) -> None:
    text = resources.files("smelt.serving").joinpath("page.html").read_text(encoding="utf-8")
    if runs.several:  # the page tries the first run
        first = next(iter(runs.programs))
        text = text.replace('"/v1/program"', f'"/v1/{first}/program"').replace('"/v1/predict"',
                                                                             f'"/v1/{first}/predict"')

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return HTMLResponse(text, headers=PAGE_HEADERS)

    @app.get("/healthz", summary="Whether the server takes requests, and what it has served")
    def healthz():
        return {"status": "draining" if runs.draining else "ok", **runs.stats()}


def _add_program_route(app: FastAPI, served: ServedProgram, run_dir: str, inputs_model: type, prefix: str) -> None:
    loaded, task = served.loaded, served.loaded.task

    @app.get(f"{prefix}/program", summary="The task, the program, the model, the run and its measured scores")
    def program():
        return {"task": {"name": task.name, "description": task.description,
                         "inputs": input_fields(task, inputs_model), "outputs": output_fields(task)},
                "program": program_summary(loaded), "model": model_summary(loaded), "run_dir": run_dir,
                "program_run": str(loaded.run_dir), "measured": measured_scores(Path(run_dir)),
                "stats": served.stats()}


def _add_predict_route(app: FastAPI, served: ServedProgram, inputs_model: type, log: Log, prefix: str) -> None:
    loaded, task, route = served.loaded, served.loaded.task, f"{prefix}/predict"

    @app.post(route, response_model=response_model(task), summary=f"Answer with the {task.name} program",
              responses={422: {"description": "an input missing, unknown, empty or of the wrong type"},
                         502: {"description": "the model call failed"}, 503: {"description": "shutting down"},
                         504: {"description": "no answer within --timeout"}})
    async def predict_route(body: inputs_model):
        started, inputs = time.perf_counter(), body.model_dump()
        try:
            check_fields(loaded, inputs)
            result = await served.call(lambda: predict(loaded, inputs))
        except RequestFailed as exc:
            log(route, exc.status, started, inputs=inputs, error=exc.message)
            raise
        result["latency_s"] = round(time.perf_counter() - started, 4)
        log(route, 200, started, inputs=inputs, outputs=result["outputs"], usage=result["usage"])
        return result


def _add_name_one_routes(app: FastAPI, names: list[str]) -> None:
    """/v1/predict and /v1/program when several runs are served: a 404 saying to name one."""
    served = ", ".join(names)

    @app.post("/v1/predict", include_in_schema=False)
    def predict_which():
        raise RequestFailed(404, f"several runs are served here ({served}); name one: POST /v1/RUN_NAME/predict")

    @app.get("/v1/program", include_in_schema=False)
    def program_which():
        raise RequestFailed(404, f"several runs are served here ({served}); name one: GET /v1/RUN_NAME/program")


def _chosen_run(runs: ServedRuns, requested: str | None) -> tuple[ServedProgram, str]:
    """The run a chat request's ``model`` names, and the model name its reply carries: with one run, that run's
    model whatever is asked (as before); with several, the run of that name."""
    if not runs.several:
        return runs.first, model_id(runs.first.loaded)
    if requested in runs.programs:
        return runs.programs[requested], requested
    served = ", ".join(runs.programs)
    if requested is None:
        raise RequestFailed(400, f"several runs are served here; name one in \"model\": {served}")
    raise RequestFailed(404, f"model {requested!r} is not served here; the served runs are {served} (GET /v1/models)")


def _add_chat_routes(app: FastAPI, runs: ServedRuns, log: Log) -> None:
    @app.post("/v1/chat/completions", summary="The served model itself, as OpenAI's chat completions API")
    async def chat_route(body: ChatRequest):
        started = time.perf_counter()
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        try:
            served, served_model = _chosen_run(runs, body.model)
        except RequestFailed as exc:
            log("/v1/chat/completions", exc.status, started, messages=messages, error=exc.message)
            raise
        loaded = served.loaded
        if body.stream:
            return await _streamed_chat(served, served_model, body, messages, started, log)
        try:
            result = await served.call(lambda: complete(loaded, body, served_model))
        except RequestFailed as exc:
            log("/v1/chat/completions", exc.status, started, messages=messages, error=exc.message)
            raise
        log("/v1/chat/completions", 200, started, messages=messages,
            output=result["choices"][0]["message"]["content"], usage=result["usage"])
        return result

    ids = list(runs.programs) if runs.several else [model_id(runs.first.loaded)]

    @app.get("/v1/models", summary="The models served (one per run), as OpenAI lists models")
    def models():
        return {"object": "list",
                "data": [{"id": name, "object": "model", "created": 0, "owned_by": "smelt"} for name in ids]}


async def _streamed_chat(served: ServedProgram, served_model: str, body: ChatRequest, messages: list[dict],
                         started: float, log: Log) -> StreamingResponse:
    """The chat as server-sent events; a request that fails before its first event gets an error reply instead."""
    loaded = served.loaded
    try:
        events = await served.open_stream(lambda: stream_events(loaded, body))
    except RequestFailed as exc:
        log("/v1/chat/completions", exc.status, started, messages=messages, error=exc.message)
        raise

    def finished(text: str, usage: dict | None, error: str | None) -> None:
        served.count_tokens((usage or {}).get("completion_tokens", 0))
        log("/v1/chat/completions", 200, started, messages=messages, output=text, usage=usage, stream=True,
            **({"error": error} if error else {}))

    include_usage = body.stream_options is not None and body.stream_options.include_usage
    chunks = sse_chunks(events, loaded, served_model, include_usage, finished)
    return StreamingResponse(chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _validation_reply(errors: list[dict]) -> JSONResponse:
    return JSONResponse({"detail": errors}, status_code=422)


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error["loc"][1:]) or "body"
    return f"{where}: {error['msg']}"
