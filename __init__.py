"""smelt: make a small, local language model good at one task.

The public API is the names in ``__all__`` (docs/api.md): what a task file and Python code may rely on; every
other module is internal and may move. They load on first use, so ``import smelt`` imports neither DSPy nor torch.

The repository root is this package: ``signatures`` -> ``programs`` -> ``lm`` -> ``optimizers`` -> ``eval``
read top to bottom as the pipeline does; ``commands`` holds each CLI command as a library function.
"""

import os

# Offline/private use: LiteLLM would otherwise fetch its model cost map from GitHub on import (warnings, retries).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# name -> the module that defines it (imported when the name is first used)
_PUBLIC = {
    "Task": "smelt.programs.task",
    "Splits": "smelt.programs.datasets",
    "load_splits": "smelt.programs.datasets",
    "seeded_split": "smelt.programs.datasets",
    "load_records": "smelt.programs.data_files",
    "register_metric": "smelt.eval.metrics",
    "load_run": "smelt.commands.saved_run",
    "SmeltError": "smelt.errors",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name == "__version__":
        value = _version()
    elif name in _PUBLIC:
        import importlib

        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    else:
        raise AttributeError(f"module 'smelt' has no attribute {name!r}")
    globals()[name] = value  # once: later uses do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def _version() -> str:
    """pyproject.toml's version in a checkout (an editable install's metadata keeps the version it was installed
    with), else the installed package's metadata."""
    from pathlib import Path

    pyproject = Path(__file__).with_name("pyproject.toml")
    if pyproject.is_file():
        import tomllib

        try:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project") or {}
        except (OSError, ValueError):
            project = {}
        if project.get("name") == "smelt" and isinstance(project.get("version"), str):
            return project["version"]
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("smelt")
    except PackageNotFoundError:
        return "0+unknown"
