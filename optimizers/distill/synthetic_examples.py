"""``distill --synthetic N``: new training inputs written by the teacher, answered by it, kept when a judge agrees.

The task's last input field is the one written (a question beside its document, a citizen's inquiry); the
others are context shared by the train examples written for (one document's questions are the examples
when writing another question about it). A new input is kept when the teacher answers it, the judge rates
the answer 7/10 or more, and it is not already among the inputs.
"""

import random

import dspy

from smelt.eval.judge import JUDGE_INPUT_CHARS, render_fields
from smelt.signatures.synthetic import JudgeUnreferenced, write_input_signature

KEEP_RATING = 7


def write_synthetic_examples(task, program: dspy.Module, lm, train: list[dspy.Example], judge_lm, *, count: int,
                             seed: int = 0, log=print) -> list[tuple[dspy.Example, dict]]:
    """Up to ``count`` (example, teacher outputs) pairs, in at most 3 x ``count`` attempts."""
    *context, written = task.input_fields
    groups: dict[tuple, list[str]] = {}
    for example in train:
        groups.setdefault(tuple(example.get(name) for name in context), []).append(str(example.get(written)))
    order = list(groups)
    random.Random(seed).shuffle(order)
    write, rate = dspy.Predict(write_input_signature(task)), dspy.Predict(JudgeUnreferenced)
    kept: list[tuple[dspy.Example, dict]] = []
    attempts = 0
    while len(kept) < count and attempts < 3 * count:
        key = order[attempts % len(order)]
        attempts += 1
        shared = dict(zip(context, key, strict=True))
        try:
            with lm.context():
                new = str(write(**shared, examples="\n".join(groups[key]),
                                config={"temperature": 0.7, "rollout_id": attempts}).get(written) or "").strip()
                prediction = program(**shared, **{written: new}) if new else None
            outputs = {name: prediction.get(name) for name in task.output_fields} if prediction else {}
            answer = str(outputs.get(task.answer_field) or "").strip()
            if not new or not answer or new in groups[key]:
                continue
            inputs = render_fields({**shared, written: new}, JUDGE_INPUT_CHARS)
            with judge_lm.context():
                rating = int(rate(task_inputs=inputs, output=render_fields(outputs)).rating)
        except Exception as exc:  # noqa: BLE001 - a failed synthetic example is skipped, not fatal
            log(f"[smelt] synthetic example skipped: {type(exc).__name__}")
            continue
        if rating < KEEP_RATING:
            continue
        groups[key].append(new)
        example = dspy.Example(id=f"synthetic-{len(kept) + 1}", **shared, **{written: new}, **outputs)
        kept.append((example.with_inputs(*task.input_fields), outputs))
    log(f"[smelt] synthetic: kept {len(kept)} of {attempts} teacher-written {written}s")
    return kept
