"""Task files: what they declare becomes a Task; every mistake is one error naming the file and the key."""

import pytest

from smelt.errors import SmeltError
from smelt.programs.registry import get_task

GOOD = '''
signature = "document, question -> answer"
instructions = "Answer from the document."
[fields.question]
desc = "a question about the document"
[data]
train = "d.jsonl"
dev = "d.jsonl"
test = "d.jsonl"
'''


def _write(tmp_path, text, name="task.toml"):
    (tmp_path / "d.jsonl").write_text('{"document": "x", "question": "q", "answer": "a"}\n', encoding="utf-8")
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_toml_task(tmp_path):
    task = get_task(_write(tmp_path, GOOD, "my_task.toml"))
    assert task.name == "my_task"  # the file name, when the file gives none
    assert task.input_fields == ("document", "question") and task.answer_field == "answer"
    assert task.default_metric == "f1" and task.answer_labels is None
    assert task.signature.instructions == "Answer from the document."
    assert task.signature.input_fields["question"].json_schema_extra["desc"] == "a question about the document"
    assert task.default_options() == {"predictor": "predict", "max_tokens": 64, "constrain": True, "choice": "generate"}
    splits = task.shipped_data()
    assert [len(s) for s in (splits.train, splits.dev, splits.test)] == [1, 1, 1]
    assert dict(splits.train[0].inputs()) == {"document": "x", "question": "q"}


def test_a_yaml_task(tmp_path):
    text = 'signature: "inquiry -> department"\nfields:\n  department:\n    labels: [a, b]\n'
    task = get_task(_write(tmp_path, text, "route.yaml"))
    assert task.answer_labels == ("a", "b") and task.default_metric == "accuracy"


@pytest.mark.parametrize(("text", "fragments"), [
    ("signatur = 'a -> b'", ["signatur: unknown key", "signature"]),
    ("name = 'x'", ["signature: missing"]),
    ("signature = 'a, b'", ["signature:", "is not a DSPy string signature"]),
    ("signature = 'a -> b'\n[fields.c]\ndesc = 'x'", ["fields.c: not a field of the signature", "a, b"]),
    ("signature = 'a -> b'\n[fields.b]\ndescription = 'x'", ["fields.b.description: unknown key", "desc"]),
    ("signature = 'a -> b'\n[fields.a]\nlabels = ['x', 'y']", ["fields.a.labels", "first output field (b)"]),
    ("signature = 'a -> b'\n[fields.b]\nlabels = ['x']", ["fields.b.labels", "at least two"]),
    ("signature = 'a -> b'\nmetric = 'bleu'", ["metric: 'bleu' is not one of"]),
    ("signature = 'a -> b'\nmetric = 'accuracy'", ["metric: accuracy needs", "labels"]),
    ("signature = 'a -> b'\npredictor = 'tot'", ["predictor: 'tot'"]),
    ("signature = 'a -> b'\nmax_tokens = 0", ["max_tokens: 0 is not a positive integer"]),
    ("signature = 'a -> b'\n[data]\ntrain = 'missing.jsonl'", ["data.train: 'missing.jsonl': no such file"]),
    ("signature = 'a -> b'\n[data]\ntrain = 'd.jsonl'", ["data.dev: missing"]),
    ("signature = 'a -> b'\nname = 'my task'", ["task name 'my task'"]),
    ("signature = 'a -> b\n", ["not valid TOML"]),
])
def test_a_bad_task_file_is_one_error_naming_the_key(tmp_path, text, fragments):
    path = _write(tmp_path, text)
    with pytest.raises(SmeltError) as error:
        get_task(path)
    message = str(error.value)
    assert "\n" not in message and path in message or "TASK" in message
    for fragment in fragments:
        assert fragment in message, message


def test_python_task_errors(tmp_path):
    module = tmp_path / "t.py"
    module.write_text("task = 3\ndef broken():\n    raise ValueError('boom')\n", encoding="utf-8")
    with pytest.raises(SmeltError, match="task is a int, not a smelt.programs.task.Task"):
        get_task(f"{module}:task")
    with pytest.raises(SmeltError, match=r"calling broken\(\) failed \(ValueError: boom\)"):
        get_task(f"{module}:broken")
    with pytest.raises(SmeltError, match="defines no 'other'"):
        get_task(f"{module}:other")
    with pytest.raises(SmeltError, match="name the task object too"):
        get_task(str(module))
    with pytest.raises(SmeltError, match="cannot import module 'no_such_pkg.mod'"):
        get_task("no_such_pkg.mod:task")
