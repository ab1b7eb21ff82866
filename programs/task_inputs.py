"""The inputs a caller gives a task's program (``run -i``, ``serve``'s ``/v1/predict``), checked against its fields."""

from smelt.errors import SmeltError
from smelt.programs.text import is_blank


def check_inputs(task, inputs: dict[str, str]) -> None:
    """Every input of ``task`` given and not empty (nor only invisible characters), and nothing else."""
    fields = task.input_fields
    unknown = [name for name in inputs if name not in fields]
    missing = [name for name in fields if is_blank(str(inputs.get(name) or ""))]
    if unknown:
        raise SmeltError(f"--input {unknown[0]}: not an input of task {task.name}; its inputs: {', '.join(fields)}")
    if missing:
        given = inputs.get(missing[0])
        what = "is missing" if given is None else "is empty" if not given else \
            "holds only spaces or invisible characters (such as U+200B)"
        raise SmeltError(f"--input {missing[0]}=... {what}; task {task.name} takes "
                         + " ".join(f"--input {name}=..." for name in fields))
