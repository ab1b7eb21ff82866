"""Every mistake a user can make with a model spec ends in one SmeltError line that says what to do."""

import pytest

from smelt.errors import SmeltError
from smelt.lm import lm_for_spec
from smelt.lm.devices import resolve_device
from smelt.lm.loading import load_model
from smelt.lm.specs import parse_spec


def one_line(caught: pytest.ExceptionInfo) -> str:
    message = str(caught.value)
    assert "\n" not in message
    return message


def tiny_llama_adapter(folder, *, hidden_size=32, head_dim=None, layers=2, safetensors=True):
    """A peft LoRA (q_proj, v_proj) saved from a tiny random Llama: an adapter for some other base model."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from smelt.lm.loading import peft_quietly

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=hidden_size,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=head_dim or hidden_size // 4,
    )
    with peft_quietly():
        model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(folder, safe_serialization=safetensors)
    return folder


def test_unknown_alias():
    with pytest.raises(SmeltError) as caught:
        lm_for_spec("qwen-9000", option="--student")
    assert one_line(caught).startswith("--student 'qwen-9000': unknown model; known names: gemma-3-270m, ")


def test_missing_local_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SmeltError) as caught:
        load_model(parse_spec("hf:./nope"), device="cpu")
    assert "hf:./nope: no such model folder './nope'" in one_line(caught)


def test_hub_model_not_cached_and_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(SmeltError) as caught:
        load_model(parse_spec("hf:smelt-test/not-a-model"), device="cpu")
    message = one_line(caught)
    assert "'smelt-test/not-a-model' is not in the local Hugging Face cache" in message
    assert "`hf download smelt-test/not-a-model`" in message


HUB_LOAD = """
import sys
from smelt.errors import SmeltError
from smelt.lm.loading import load_model
from smelt.lm.specs import parse_spec
try:
    load_model(parse_spec("hf:nobody/not-a-model"), device="cpu")
except SmeltError as exc:  # as cli.py reports it: the one line on stderr
    print(exc, file=sys.stderr)
    sys.exit(2)
"""


def test_hub_unreachable_says_one_line_and_nothing_else(tmp_path):
    """No hub cache and no hub: smelt's line is all of stderr (huggingface_hub logs every failed request)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf-home"))
    done = subprocess.run([sys.executable, "-c", HUB_LOAD], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr == (
        "model 'nobody/not-a-model' is not in the local Hugging Face cache and could not be downloaded "
        "(cannot reach http://127.0.0.1:9: [Errno 111] Connection refused); download it on a connected machine "
        "with `hf download nobody/not-a-model` (run `hf auth login` first for gated models such as Llama), "
        "or pass a local folder as hf:PATH\n"
    )


def test_hub_logs_are_held_back_on_failure_and_replayed_on_success(caplog):
    import logging

    from smelt.lm.loading import _logs_held_back

    hub_logger = logging.getLogger("huggingface_hub.utils._http")
    with pytest.raises(OSError), _logs_held_back():
        hub_logger.warning("'Connection refused' thrown while requesting HEAD")
        raise OSError("no connection")
    assert caplog.messages == []
    with _logs_held_back():
        hub_logger.warning("kept for a load that worked")
    assert caplog.messages == ["kept for a load that worked"]


def test_adapter_for_another_base_model(embedded_model, tmp_path):
    folder = tiny_llama_adapter(tmp_path / "llama-lora")
    with pytest.raises(SmeltError) as caught:
        lm_for_spec("gemma-3-270m", device="cpu", adapter=folder)
    message = one_line(caught)
    assert message.startswith(f"{folder}: it does not fit the base model ")
    assert "load it with the student model it was distilled for" in message


@pytest.mark.filterwarnings("ignore:Found missing adapter keys")
def test_adapter_with_matching_shapes_but_fewer_layers(embedded_model, tmp_path):
    # Same q/v projection shapes as Gemma 3 270M (hidden 640, 4 heads of 256, 1 KV head), one layer instead of 18:
    # peft only warns about the modules the adapter does not cover, so smelt has to notice.
    folder = tiny_llama_adapter(tmp_path / "shallow-lora", hidden_size=640, head_dim=256, layers=1)
    with pytest.raises(SmeltError) as caught:
        lm_for_spec("gemma-3-270m", device="cpu", adapter=folder)
    assert "it has LoRA weights for 2 modules, this base model takes 36" in one_line(caught)


def test_adapter_folder_without_safetensors(tmp_path):
    folder = tiny_llama_adapter(tmp_path / "bin-lora", safetensors=False)
    assert (folder / "adapter_model.bin").is_file()
    with pytest.raises(SmeltError) as caught:
        lm_for_spec("gemma-3-270m", device="cpu", adapter=folder)
    message = one_line(caught)
    assert message.startswith(f"{folder}: holds adapter_model.bin, a pickle, which smelt never loads")
    assert "--adapter" not in message and "safe_serialization=True" in message


def test_adapter_folder_missing(tmp_path):
    with pytest.raises(SmeltError) as caught:
        lm_for_spec("gemma-3-270m", device="cpu", adapter=tmp_path / "absent")
    assert "no such folder" in one_line(caught)


def test_adapter_on_a_litellm_model(tmp_path):
    with pytest.raises(SmeltError) as caught:
        lm_for_spec("openai/gpt-4o-mini", adapter=tmp_path)
    assert "can only be attached to an in-process (hf:) model" in one_line(caught)


def test_cuda_without_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(SmeltError) as caught:
        resolve_device("cuda")
    message = one_line(caught)
    assert message.startswith("--device cuda: no CUDA GPU is visible to torch")
    assert "use --device cpu" in message


def test_not_a_device():
    with pytest.raises(SmeltError, match="--device 'tpu' is not a device"):
        resolve_device("tpu")
