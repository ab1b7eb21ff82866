"""Before ``serve`` says it is ready: one short call per predictor on an in-process model, so that the first request
is answered as fast as the next.

The in-process engine builds its int8 greedy screen on its first decode step (quantizing the output projection: a
second or more, several where fbgemm packs it), and the program's shared prompt prefix (a compiled program's system
message and demos) is computed by the first request that needs it and then served from the prefix cache. Here each
predictor's prompt, with every input left empty, goes through the model for one token: what it shares with a real
request's prompt stays in the prefix cache. A model behind a server is not called: it may bill by the request, and
it keeps its own caches.
"""

import time

from smelt.lifecycle.reloaded_run import LoadedRun


def warm_up(loaded: LoadedRun, log) -> None:
    """Run each predictor's prompt (inputs empty) for one token on the in-process model; a failure is said in one
    line and left to the requests, which report their own."""
    if loaded.lm.engine is None:
        return
    started = time.perf_counter()
    try:
        with loaded.lm.context():
            for _, predictor in loaded.program.named_predictors():
                signature = predictor.signature
                inputs = dict.fromkeys(signature.input_fields, "")
                messages = loaded.lm.adapter.format(signature, predictor.demos, inputs)
                loaded.lm.lm(messages=messages, max_tokens=1)
    except Exception as exc:  # noqa: BLE001 - the server still starts; a request says what fails
        log(f"[smelt] warning: warming up the model failed ({type(exc).__name__}: {str(exc)[:200]}); "
            "the first request will say whether it answers")
        return
    log(f"[smelt] warmed up in {time.perf_counter() - started:.1f} s (the model's first step, the program's "
        "shared prompt prefix)")
