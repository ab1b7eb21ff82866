"""``-o choice=likelihood``: a label task's answer is the declared label the model finds most likely, calibrated
against the model's prior over the labels, instead of free text that may be none of them.

Each predictor that writes the task's labeled answer becomes a ``LabelChoice`` (a ``dspy.Predict``, so its demos,
program.json, DSPy's optimizers and traces work as before). It builds the prompt the predictor would send (the
configured adapter's messages, with its prefill ``[[ ## answer ## ]]``; the engine's token ids) and scores every
label as its continuation in one prompt pass (``smelt.lm.engine.continuation_scores``).

What is scored is the label and the blank line that ends the answer (``PrefillChatAdapter``'s stop), so the score is
the probability of answering exactly that label and stopping: a label that is a prefix of another ("tax" and
"taxes") does not win by being shorter, since "tax" must be followed by the blank line, not by "es".

Calibration (contextual calibration, Zhao et al. 2021, "Calibrate Before Use"): a small model favours some labels
whatever the input (the embedded model answered one label for 24 of 30 inquiries). Its prior is the probability it
gives each label, normalised over the labels, when every input field is content-free ("N/A", and empty), averaged;
the choice is argmax of log p(label | input) - log p_prior(label). The prior depends only on the prompt without the
input (instructions, demos, the adapter): it is computed once per such prompt and kept.

At a temperature above 0 (distill's later teacher attempts) the label is drawn from the calibrated scores'
softmax at that temperature instead, seeded like the engine's sampling.
"""

import hashlib
import json
import math
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import dspy
from dspy.dsp.utils.settings import settings

from smelt.errors import SmeltError
from smelt.lm.engine.continuation_scores import score_continuations
from smelt.lm.prefill_adapter import PrefillChatAdapter, field_marker
from smelt.lm.rendering import encode_prompt

ANSWER_END = "\n\n"  # where PrefillChatAdapter ends a prefilled answer (its stop string): scored after each label
CONTENT_FREE_INPUTS = ("N/A", "")  # each input field replaced by these in turn; the prior is their average


def normalized_logprobs(logprobs: Sequence[float]) -> list[float]:
    """``logprobs`` (of the labels) renormalised so that their probabilities sum to one over the labels."""
    total = _logsumexp(logprobs)
    return [value - total for value in logprobs]


def content_free_prior(runs: Sequence[Sequence[float]]) -> list[float]:
    """The labels' probabilities for content-free inputs: each run's log-probabilities normalised over the labels,
    then the probabilities averaged over the runs."""
    probabilities = [[math.exp(v) for v in normalized_logprobs(run)] for run in runs]
    return [sum(column) / len(probabilities) for column in zip(*probabilities, strict=True)]


def calibrated_scores(logprobs: Sequence[float], prior: Sequence[float] | None) -> list[float]:
    """log p(label | input) - log p_prior(label), p normalised over the labels (``prior`` None: uncalibrated)."""
    normalized = normalized_logprobs(logprobs)
    if prior is None:
        return normalized
    return [value - math.log(max(p, 1e-300)) for value, p in zip(normalized, prior, strict=True)]


def chosen_index(scores: Sequence[float], settings: dict, inputs: dict) -> int:
    """The best label's index; at a temperature above 0 (a teacher's later attempts, a sampled rollout), a label
    drawn from softmax(scores / temperature), the same draw for the same seed, rollout id and inputs."""
    temperature = settings.get("temperature") or 0.0
    if temperature <= 0:
        return max(range(len(scores)), key=scores.__getitem__)
    top = max(scores)
    weights = [math.exp((value - top) / temperature) for value in scores]
    seed = settings.get("seed")
    draw = [seed, settings.get("rollout_id"), inputs]
    rng = random.Random(hashlib.sha256(json.dumps(draw, sort_keys=True, default=str).encode()).hexdigest()
                        if seed is not None else None)
    return rng.choices(range(len(scores)), weights)[0]


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


class LabelChoice(dspy.Predict):
    """A ``dspy.Predict`` whose one output, the task's labeled answer, is the label the model finds most likely,
    calibrated."""

    def __init__(self, signature, labels: Sequence[str], **config):
        super().__init__(signature, **config)
        self.labels = tuple(labels)

    def forward(self, **kwargs):
        lm, config, signature, demos, inputs = self._forward_preprocess(**kwargs)
        engine = in_process_engine(lm)
        adapter = settings.adapter or PrefillChatAdapter()
        scorer = LabelScorer(engine, signature, demos, adapter, self.labels, getattr(lm, "model", engine.name))
        logprobs = scorer.scores({name: inputs.get(name) for name in signature.input_fields})
        scores = calibrated_scores(logprobs, scorer.cached_prior())
        label = self.labels[chosen_index(scores, {**getattr(lm, "kwargs", {}), **config}, inputs)]
        return self._forward_postprocess([{next(iter(signature.output_fields)): label}], signature, **inputs)

    async def aforward(self, **kwargs):
        import asyncio

        return await asyncio.to_thread(self.forward, **kwargs)


def in_process_engine(lm):
    """The in-process engine behind ``lm`` (a distilled student's adapter included), or one line saying why not."""
    engine = getattr(lm, "engine", None)
    if not all(hasattr(engine, name) for name in ("model", "tokenizer", "check_fits")):
        raise SmeltError(f"-o choice=likelihood needs a model smelt runs in process with transformers (gemma-3-270m, "
                         f"hf:...); {getattr(lm, 'model', lm)} runs elsewhere (a server, llama.cpp), which gives no "
                         "label likelihoods here: use -o choice=generate with it")
    return engine


class LabelScorer:
    """The labels' log-probabilities after one predictor's prompt for given inputs, on one engine."""

    def __init__(self, engine, signature, demos, adapter, labels: tuple[str, ...], usage_name: str):
        self.engine, self.signature, self.demos, self.adapter = engine, signature, demos, adapter
        self.labels = labels
        self.usage_name = usage_name
        tokenizer = engine.tokenizer
        self.continuations = [tokenizer(label + ANSWER_END, add_special_tokens=False)["input_ids"] for label in labels]

    def prompt_ids(self, inputs: dict) -> list[int]:
        messages = self.adapter.format(self.signature, self.demos, inputs)
        if messages[-1]["role"] != "assistant":  # an adapter without a prefill: the answer's marker, as ours writes
            messages = [*messages, {"role": "assistant",
                                    "content": field_marker(next(iter(self.signature.output_fields))) + "\n"}]
        return encode_prompt(self.engine.tokenizer, messages)

    def scores(self, inputs: dict) -> list[float]:
        """Each label's log-probability (its tokens and the answer's end) after the prompt for ``inputs``."""
        prompt = self.prompt_ids(inputs)
        per_token = score_continuations(self.engine, prompt, self.continuations)
        tracker = settings.usage_tracker
        if tracker is not None:  # one model call: the prompt and the labels read, nothing generated
            tracker.add_usage(self.usage_name, {"prompt_tokens": len(prompt) + sum(map(len, self.continuations)),
                                                "completion_tokens": 0})
        return [sum(values) for values in per_token]

    def content_free_inputs(self) -> list[dict]:
        return [{name: text for name in self.signature.input_fields} for text in CONTENT_FREE_INPUTS]

    def prior_key(self) -> Hashable:
        """What the prior depends on: the model (its engine's name holds its dtype and adapter), the labels and the
        content-free prompts' token ids."""
        return (self.engine.name, getattr(self.engine, "device", None), self.labels,
                *(tuple(self.prompt_ids(inputs)) for inputs in self.content_free_inputs()))

    def prior(self) -> list[float]:
        return content_free_prior([self.scores(inputs) for inputs in self.content_free_inputs()])

    def cached_prior(self) -> list[float]:
        """``prior``, computed once per prompt without the input (the same demos, instructions, adapter) and kept."""
        return _PRIORS.get(self.prior_key(), self.prior)


class _PriorCache:
    """Priors by prompt, computed once each even when several threads ask for the same one at once; the least
    recently used are dropped past ``size``."""

    def __init__(self, size: int = 256):
        self.size = size
        self._priors: OrderedDict[Hashable, list[float]] = OrderedDict()
        self._computing: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], list[float]]) -> list[float]:
        with self._lock:
            if key in self._priors:
                self._priors.move_to_end(key)
                return self._priors[key]
            key_lock = self._computing.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._priors:
                    return self._priors[key]
            prior = compute()
            with self._lock:
                self._priors[key] = prior
                self._computing.pop(key, None)
                while len(self._priors) > self.size:
                    self._priors.popitem(last=False)
        return prior


_PRIORS = _PriorCache()


def choose_labels_by_likelihood(program: dspy.Module, task) -> dspy.Module:
    """``program`` with each predictor that writes the task's labeled answer replaced by a ``LabelChoice`` (in place;
    a program that is such a predictor itself is replaced whole). Refused, naming the option, where a predictor
    writes more than the answer (chain of thought's reasoning, a second output) or none writes it."""
    labels = task.answer_labels
    if isinstance(program, dspy.Predict) and task.answer_field in program.signature.output_fields:
        return _label_choice(program, task, labels)  # the program is its one predictor
    replaced = _replace_predictors(program, task, labels, set())
    if not replaced:
        raise SmeltError(f"-o choice=likelihood: no predictor of task {task.name} writes its answer "
                         f"({task.answer_field}); use -o choice=generate")
    return program


def _replace_predictors(module: dspy.Module, task, labels, seen: set[int]) -> int:
    if id(module) in seen:
        return 0
    seen.add(id(module))
    replaced = 0
    for attribute, value in list(vars(module).items()):
        if isinstance(value, dspy.Predict) and task.answer_field in value.signature.output_fields:
            setattr(module, attribute, _label_choice(value, task, labels))
            replaced += 1
        elif isinstance(value, dspy.Module):
            replaced += _replace_predictors(value, task, labels, seen)
    return replaced


def _label_choice(predictor: dspy.Predict, task, labels) -> LabelChoice:
    others = [name for name in predictor.signature.output_fields if name != task.answer_field]
    if others:
        raise SmeltError(f"-o choice=likelihood: a predictor of task {task.name} writes {', '.join(others)} beside "
                         f"its answer ({task.answer_field}), and a label chosen by likelihood is written alone; use "
                         "-o predictor=predict (no chain of thought) or -o choice=generate")
    chosen = LabelChoice(predictor.signature, labels, callbacks=predictor.callbacks, **predictor.config)
    chosen.demos, chosen.lm = predictor.demos, predictor.lm
    return chosen
