"""From a spec string to a ready ``dspy.LM`` and the adapter that suits it."""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import dspy

from smelt.lm.specs import ModelSpec, parse_spec


@dataclass
class ResolvedLM:
    """A model ready for DSPy: the LM, the adapter to format for it, and (in-process) its engine."""

    spec: ModelSpec
    lm: dspy.LM
    adapter: dspy.Adapter
    engine: object | None = None
    adapter_dir: str | None = None

    def context(self):
        """``with resolved.context(): ...`` runs DSPy calls on this model without touching global settings."""
        return dspy.context(lm=self.lm, adapter=self.adapter)

    def describe(self) -> dict:
        """What a manifest records about this model (never an API key)."""
        described = {"spec": self.spec.raw, "kind": self.spec.kind, "target": self.spec.target}
        if self.engine is not None:
            described["device"] = self.engine.device
            described["dtype"] = self.engine.dtype
        if self.adapter_dir:
            described["adapter"] = self.adapter_dir
        if not getattr(self.adapter, "instructions", True):
            described["instructions"] = False
        return described


def lm_for_spec(
    spec: str,
    *,
    option: str = "--lm",
    device: str = "auto",
    adapter: str | Path | None = None,
    api_base: str | None = None,
    temperature: float = 0.0,
    max_tokens: int | None = None,
    cache: bool = True,
    max_batch_size: int = 16,
    instructions: bool = True,
) -> ResolvedLM:
    """Resolve a spec string (see ``smelt.lm.specs``) into a model DSPy can call.

    ``instructions=False`` formats prompts without DSPy's system message: the lean prompt of a
    distilled student, whose adapter was trained on that format (see ``PrefillChatAdapter``).
    """
    parsed = parse_spec(spec, option)
    if not parsed.in_process:
        from smelt.errors import SmeltError

        if adapter:
            raise SmeltError(f"{option} {spec}: a LoRA adapter can only be attached to an in-process (hf:) model")
        kwargs = {"api_base": api_base} if api_base else {}
        lm = dspy.LM(parsed.target, temperature=temperature, max_tokens=max_tokens or 1024, cache=cache, **kwargs)
        return ResolvedLM(parsed, lm, dspy.ChatAdapter())

    from smelt.lm.engine import DEFAULT_MAX_TOKENS, TransformersEngine
    from smelt.lm.loading import load_model
    from smelt.lm.prefill_adapter import PrefillChatAdapter

    loaded = load_model(parsed, device=device, adapter=adapter)
    # DSPy's response cache is keyed by the model name: the dtype and an adapter must change that name.
    name = f"{parsed.raw}@{loaded.dtype}" + (f"+lora-{_digest(adapter)}" if adapter else "")
    engine = TransformersEngine(loaded.model, loaded.tokenizer, name=name, max_batch_size=max_batch_size)
    engine.device = loaded.device
    engine.dtype = loaded.dtype
    lm = dspy.LM(
        f"smelt/{name}",
        engine=engine,
        temperature=temperature,
        max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
        cache=cache,
    )
    return ResolvedLM(parsed, lm, PrefillChatAdapter(instructions=instructions), engine,
                      str(adapter) if adapter else None)


def build_lm(spec: str, **kwargs) -> dspy.LM:
    """Just the ``dspy.LM`` for a spec, for use with ``dspy.configure(lm=...)``."""
    return lm_for_spec(spec, **kwargs).lm


def _digest(adapter: str | Path) -> str:
    weights = Path(adapter) / "adapter_model.safetensors"
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:12]
