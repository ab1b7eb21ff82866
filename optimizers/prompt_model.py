"""The prompt model: the model that writes instructions for mipro, copro, simba and gepa (``--prompt-lm``; by default
the program's own model).

DSPy's optimizers switch only the LM when they call their prompt model (``dspy.context(lm=prompt_model)``); the
adapter stays the program's. A server prompt model (``openai/...``) behind an in-process program would then be sent
the program's prefilled prompt and its stop strings (more than OpenAI's four). ``proposing_context`` gives each
request the adapter of the model it goes to.
"""

from __future__ import annotations

from contextlib import contextmanager


class AdapterPerModel:
    """An adapter that formats each request with the adapter of the model it goes to: the prompt model's requests
    with its own, every other request with the program's (``default``), which also answers everything else asked
    of an adapter."""

    def __init__(self, default, by_model: dict[str, object]):
        self.default = default
        self.by_model = by_model

    def _for(self, lm):
        return self.by_model.get(getattr(lm, "model", None), self.default)

    def __call__(self, lm, *args, **kwargs):
        return self._for(lm)(lm, *args, **kwargs)

    async def acall(self, lm, *args, **kwargs):
        return await self._for(lm).acall(lm, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.default, name)


@contextmanager
def proposing_context(lm, prompt_lm=None):
    """DSPy calls on the program's model ``lm`` (a ResolvedLM), and on ``prompt_lm`` where an optimizer asks its
    prompt model, each through its own adapter."""
    import dspy

    if prompt_lm is None or prompt_lm.lm.model == lm.lm.model:
        with lm.context():
            yield
        return
    adapter = AdapterPerModel(lm.adapter, {prompt_lm.lm.model: prompt_lm.adapter})
    with dspy.context(lm=lm.lm, adapter=adapter):
        yield
