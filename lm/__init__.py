"""Everything that talks to a model: spec strings to ``dspy.LM``, the in-process engine, the embedded model.

``build_lm`` and ``lm_for_spec`` import DSPy, so they load on first use: reading a spec or the backends table
(``--help``, ``cli.py models``) stays fast."""

from smelt.lm.backends import BACKENDS, Backend
from smelt.lm.specs import ALIASES, ModelSpec, parse_spec

__all__ = ["ALIASES", "BACKENDS", "Backend", "ModelSpec", "build_lm", "lm_for_spec", "parse_spec"]


def __getattr__(name: str):
    if name in ("build_lm", "lm_for_spec"):
        from smelt.lm import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
