"""The in-process engine: a transformers causal LM behind ``dspy.LM(model, engine=...)``, batching concurrent
requests. docs/engine.md maps its modules.

``TransformersEngine`` imports DSPy and transformers, so it loads on first use: importing one of the engine's
parts (``prefix_cache``, ``prompt_lookup``, ...) stays light."""

__all__ = ["PromptTooLong", "TransformersEngine", "context_length"]


def __getattr__(name: str):
    if name in __all__:
        from smelt.lm.engine import transformers_engine

        return getattr(transformers_engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
