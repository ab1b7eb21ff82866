"""The two halves of a causal LM that the engine's own loops call: the decoder stack and the output projection.

Running the decoder stack alone lets the prompt pass skip the output projection (with a 262k-token
vocabulary, the largest matrix of a small model). Computing the projection as ``weight @ hidden.T``
keeps the big matrix on the left, where CPU BLAS splits the work well (``F.linear`` with a few rows is
slower: docs/benchmarks.md), and the result is the same as batch-1 ``F.linear``.
"""

# Config attributes through which some architectures rescale logits after the output projection.
_LOGIT_RESCALERS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "lm_head_multiplier")


def decoder_of(model):
    """The model's decoder stack (LoRA layers included: they live inside it), or None if it has none."""
    try:
        decoder = model.get_decoder()
    except (AttributeError, ValueError):
        return None
    return decoder if decoder is not None and decoder is not model else None


def plain_output_projection(model):
    """The output projection's weight when logits are exactly ``hidden @ weight.T``; else None."""
    import torch

    try:
        head = model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return None
    config = getattr(model, "config", None)
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in _LOGIT_RESCALERS):
        return None
    return head.weight


def logits_size(model) -> int:
    """How many logits a step gives: the output projection's rows (a model may pad its vocabulary past the tokenizer's
    tokens), else the text config's vocabulary size."""
    try:
        head = model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        head = None
    if head is not None and getattr(head, "weight", None) is not None:
        return head.weight.shape[0]
    return model.config.get_text_config().vocab_size


def cache_keyword(module) -> str:
    """The keyword under which ``module``'s forward takes the key/value cache: ``cache`` since transformers renamed
    it (``past_key_values`` still works there, with a deprecation warning per process), ``past_key_values`` before."""
    import inspect

    try:
        parameters = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in parameters else "past_key_values"
