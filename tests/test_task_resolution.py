"""TASK is read and checked once per process: every layer of a command that asks for it gets the same Task, and a
task file edited since is read again."""

from smelt.programs.registry import get_task

TASK_FILE = '''signature = "text -> label"
instructions = "Sort the text."
metric = "accuracy"
[fields.label]
labels = ["a", "b"]
[data]
file = "rows.jsonl"
'''


def test_a_task_file_is_read_once_and_again_after_an_edit(tmp_path, monkeypatch):
    import smelt.programs.registry as registry

    (tmp_path / "rows.jsonl").write_text('{"text": "x", "label": "a"}\n', encoding="utf-8")
    path = tmp_path / "sort.toml"
    path.write_text(TASK_FILE, encoding="utf-8")
    reads = []
    real = registry.load_task_file
    monkeypatch.setattr(registry, "load_task_file", lambda spec: reads.append(spec) or real(spec))

    first = get_task(str(path))
    assert get_task(str(path)) is first and len(reads) == 1
    path.write_text(TASK_FILE.replace("Sort the text.", "Sort the text, carefully."), encoding="utf-8")
    edited = get_task(str(path))
    assert len(reads) == 2 and edited is not first
    assert "carefully" in edited.program().predictors()[0].signature.instructions


def test_a_python_task_is_resolved_once(tmp_path):
    (tmp_path / "echo_task.py").write_text(
        "import dspy\nfrom smelt import Task\nCALLS = []\n\n\n"
        "class Echo(dspy.Signature):\n    text: str = dspy.InputField()\n"
        "    answer: str = dspy.OutputField()\n\n\n"
        "def task():\n    CALLS.append(1)\n"
        "    return Task(name='echo_once', description='echo', signature=Echo,\n"
        "                make_program=lambda options: dspy.Predict(Echo))\n", encoding="utf-8")
    spec = f"{tmp_path / 'echo_task.py'}:task"
    import sys

    first = get_task(spec)
    assert get_task(spec) is first
    [module] = [m for name, m in sys.modules.items() if name.startswith("smelt_user_task_") and hasattr(m, "CALLS")
                and getattr(m, "__file__", "").endswith("echo_task.py")]
    assert module.CALLS == [1]  # the factory ran once
