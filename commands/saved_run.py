"""``smelt.load_run(path)``: a finished compile, distill or sweep run as a Python object that answers
(``predict``) and knows its measured scores (``scores``, from summary.json). Built on the run reloading that
``eval``, ``run`` and ``serve`` use, so it chooses a model and a server the same way: never by the run directory
alone (README, "Trust and safety")."""

from pathlib import Path
from typing import Any

from smelt.errors import SmeltError
from smelt.lifecycle.run_scores import read_summary, scores_of


def _reload(path: str | Path, **kwargs):
    """The internal reloaded run (task, program, model); imported here, lazily: it pulls DSPy and the engine."""
    from smelt.lifecycle.reloaded_run import load_run as reload

    return reload(path, **kwargs)


class SavedRun:
    """A run reloaded to answer: ``predict(**inputs)`` -> {output field: value}; ``scores`` -> {column: {split:
    score}}; ``task`` (a ``smelt.Task``) and ``path``."""

    def __init__(self, loaded, path: Path):
        self._loaded = loaded
        self.path = path
        self.task = loaded.task

    def __repr__(self) -> str:
        return f"<smelt run {self.path} of task {self.task.name} on {self.model}>"

    @property
    def model(self) -> str:
        """The spec of the model the program answers with (e.g. gemma-3-270m)."""
        spec = getattr(self._loaded.lm, "spec", None)
        return getattr(spec, "raw", None) or str(spec)

    @property
    def scores(self) -> dict[str, dict[str, float]]:
        """The run's measured scores, {column: {split: score}}: a compile run's ``baseline`` and ``compiled``, a
        distill run's ``teacher``, ``student (no adapter)`` and ``distilled student``, a sweep's trials. Read
        from summary.json each time ({} while the run has none)."""
        return scores_of(read_summary(self.path, strict=True))

    def predict(self, **inputs: Any) -> dict[str, Any]:
        """The program on ``inputs`` (every input field of the task, by name): {output field: value}."""
        task = self.task
        unknown = [name for name in inputs if name not in task.input_fields]
        missing = [name for name in task.input_fields if inputs.get(name) is None or not str(inputs[name]).strip()]
        if unknown or missing:
            what = f"{unknown[0]!r} is not an input" if unknown else f"{missing[0]!r} is missing or empty"
            raise SmeltError(f"predict(): {what}; task {task.name} takes "
                             + ", ".join(f"{name}=..." for name in task.input_fields))
        from smelt.commands.answer import call_program  # lazily: it pulls DSPy

        prediction = call_program(self._loaded, inputs)
        values = {name: prediction.get(name) for name in task.output_fields}
        return {name: value.strip() if isinstance(value, str) else value for name, value in values.items()}


def load_run(path: str | Path, *, task: str | None = None, lm: str | None = None, api_base: str | None = None,
             device: str = "auto", cache: bool = True) -> SavedRun:
    """Reload a finished run to answer with. ``task``: TASK as on the command line (``my_task.py:task``), needed
    for a run of a Python task (a run directory never imports code by itself). ``lm``: another model than the
    run's. ``api_base``: where a server model is called (``"recorded"``: the run's own server); a run directory
    never chooses it. A sweep answers with its best trial."""
    path = Path(path)
    if task is None:
        _check_task_is_data(path)
    loaded = _reload(path, task_name=task, lm_spec=lm, api_base=api_base, device=device, cache=cache,
                     option="smelt.load_run", command="run")
    return SavedRun(loaded, path)


def _check_task_is_data(path: Path) -> None:
    """A run of a Python task is refused without ``task=``, saying so in Python's terms (the CLI's message names
    a command line)."""
    from smelt.lifecycle.recorded_task import python_task_source

    source = python_task_source(path, "smelt.load_run")
    if source is not None:
        raise SmeltError(f"smelt.load_run({str(path)!r}): its task is Python code ({source}), which a run directory "
                         f"never runs by itself; name it: smelt.load_run({str(path)!r}, task={source!r})")
