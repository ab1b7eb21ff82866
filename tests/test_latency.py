"""The one-request-at-a-time latency pass: sequential, uncached while it runs, cache setting restored after."""

import contextlib
import threading
import time
from types import SimpleNamespace

import dspy

from smelt.eval.latency import single_request_latency, spread_sample


class RecordingProgram:
    def __init__(self, fail_on=None):
        self.calls, self.fail_on = [], fail_on
        self.active = 0

    def __call__(self, question):
        self.active += 1
        self.calls.append((question, RESOLVED.lm.cache, self.active, threading.get_ident()))
        time.sleep(0.01)
        self.active -= 1
        if question == self.fail_on:
            raise ValueError("unparseable")
        return dspy.Prediction(answer="a")


RESOLVED = SimpleNamespace(lm=SimpleNamespace(cache=True), context=contextlib.nullcontext)
EXAMPLES = [dspy.Example(question=f"q{i}").with_inputs("question") for i in range(5)]


def test_times_a_spread_of_examples_one_at_a_time_without_the_cache():
    program = RecordingProgram(fail_on="q1")  # a failure is timed like any other answer
    result = single_request_latency(program, EXAMPLES, RESOLVED, count=3)
    assert [c[0] for c in program.calls] == ["q0", "q1", "q3"]
    assert all(cache is False and active == 1 for _, cache, active, _ in program.calls)
    assert len({thread for *_, thread in program.calls}) == 1
    assert result["single_request_examples"] == 3 and result["single_request_latency_s"] >= 0.01
    assert RESOLVED.lm.cache is True


def test_nothing_to_time():
    assert single_request_latency(RecordingProgram(), [], RESOLVED, count=8) == {}


def test_spread_sample_covers_the_list():
    assert spread_sample(list(range(36)), 8) == [0, 4, 9, 13, 18, 22, 27, 31]
    assert spread_sample([1, 2], 8) == [1, 2]
    assert spread_sample([], 3) == []


def test_an_engine_starts_from_an_empty_prefix_cache_and_one_untimed_request():
    # The evaluation just sent these examples: their prompts must not be served from the engine's prefix cache.
    events = []
    engine = SimpleNamespace(prefix_cache=SimpleNamespace(clear=lambda: events.append("clear")))
    resolved = SimpleNamespace(lm=SimpleNamespace(cache=True), context=contextlib.nullcontext, engine=engine)

    class Program:
        def __call__(self, question):
            events.append(question)
            return dspy.Prediction(answer="a")

    result = single_request_latency(Program(), EXAMPLES, resolved, count=2)
    sample = [e.question for e in spread_sample(EXAMPLES, 2)]
    assert sample == ["q0", "q2"]
    assert events == ["clear", "q1", *sample]  # the warm-up is an example outside the sample
    assert result["single_request_examples"] == 2
