"""Inference dtype on a CPU: fp32 unless SMELT_CPU_DTYPE asks for bf16; the dtype is part of the model's name."""

import pytest
import torch

from smelt.errors import SmeltError
from smelt.lm import devices


def test_cpu_default_is_fp32(monkeypatch):
    monkeypatch.delenv("SMELT_CPU_DTYPE", raising=False)
    assert devices.default_dtype("cpu") == torch.float32
    assert devices.default_dtype("mps") == torch.float32


@pytest.mark.parametrize(("value", "dtype"), [("float32", torch.float32), ("BFLOAT16", torch.bfloat16)])
def test_the_environment_overrides_the_cpu_choice(monkeypatch, value, dtype):
    monkeypatch.setenv("SMELT_CPU_DTYPE", value)
    assert devices.default_dtype("cpu") == dtype


def test_a_bad_override_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("SMELT_CPU_DTYPE", "fp8")
    with pytest.raises(SmeltError, match="SMELT_CPU_DTYPE=fp8: use one of float32, bfloat16"):
        devices.default_dtype("cpu")


def test_the_dtype_reaches_the_model_its_name_and_the_manifest(monkeypatch):
    from smelt.lm import lm_for_spec

    monkeypatch.setenv("SMELT_CPU_DTYPE", "float32")
    resolved = lm_for_spec("gemma-3-270m", device="cpu", cache=False)
    assert next(resolved.engine.model.parameters()).dtype == torch.float32
    assert resolved.lm.model == "smelt/gemma-3-270m@float32" and resolved.describe()["dtype"] == "float32"
    monkeypatch.setenv("SMELT_CPU_DTYPE", "bfloat16")
    resolved = lm_for_spec("gemma-3-270m", device="cpu", cache=False)
    assert next(resolved.engine.model.parameters()).dtype == torch.bfloat16
    assert resolved.lm.model == "smelt/gemma-3-270m@bfloat16"
