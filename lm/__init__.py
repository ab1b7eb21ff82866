"""Everything that talks to a model: spec strings to ``dspy.LM``, the in-process engine, the embedded model."""

from smelt.lm.build import build_lm, lm_for_spec
from smelt.lm.specs import ALIASES, ModelSpec, parse_spec

__all__ = ["ALIASES", "ModelSpec", "build_lm", "lm_for_spec", "parse_spec"]
