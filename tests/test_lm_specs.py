"""Model spec strings: the embedded model, hf: targets, aliases, LiteLLM names, and what is refused."""

import pytest

from smelt.errors import SmeltError
from smelt.lm.catalog import list_models
from smelt.lm.specs import ALIASES, parse_spec


def test_embedded_spec():
    spec = parse_spec("gemma-3-270m")
    assert (spec.kind, spec.target, spec.in_process) == ("embedded", "gemma-3-270m", True)


def test_surrounding_whitespace_is_ignored():
    assert parse_spec("  gemma-3-270m \n").kind == "embedded"


@pytest.mark.parametrize(
    ("raw", "target"),
    [
        ("hf:Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct"),
        ("hf:./models/student", "./models/student"),
        ("hf: /abs/folder ", "/abs/folder"),
    ],
)
def test_hf_spec(raw, target):
    spec = parse_spec(raw)
    assert (spec.kind, spec.target, spec.in_process) == ("hf", target, True)


def test_hf_without_target_is_refused():
    with pytest.raises(SmeltError, match="hf: needs a hub id or a folder"):
        parse_spec("hf:")


@pytest.mark.parametrize("raw", ["llama-3.2-3b", "Llama-3.2-3B", "LLAMA-3.2-3B"])
def test_alias_is_case_insensitive(raw):
    spec = parse_spec(raw)
    assert (spec.kind, spec.target, spec.raw) == ("hf", "meta-llama/Llama-3.2-3B-Instruct", raw)


def test_every_alias_names_a_hub_checkpoint():
    for alias, hub_id in ALIASES.items():
        assert alias == alias.lower()
        assert parse_spec(alias).target == hub_id
        assert hub_id.count("/") == 1


@pytest.mark.parametrize("raw", ["openai/gpt-4o-mini", "ollama_chat/llama3.2", "hosted_vllm/Qwen/Qwen2.5-7B-Instruct"])
def test_provider_model_goes_to_litellm(raw):
    spec = parse_spec(raw)
    assert (spec.kind, spec.target, spec.in_process) == ("litellm", raw, False)


def test_unknown_alias_lists_known_names():
    with pytest.raises(SmeltError) as caught:
        parse_spec("llama-9b", option="--teacher")
    message = str(caught.value)
    assert message.startswith("--teacher 'llama-9b': unknown model")
    for name in ["gemma-3-270m", *ALIASES]:
        assert name in message
    assert "hf:" in message and "provider/model" in message
    assert "\n" not in message


@pytest.mark.parametrize("raw", ["", "   ", None])
def test_empty_spec_names_the_option(raw):
    with pytest.raises(SmeltError, match="--judge is empty; pass a model spec such as gemma-3-270m"):
        parse_spec(raw, option="--judge")


def test_catalog_lists_embedded_aliases_and_open_forms():
    rows = list_models()
    specs = [row["spec"] for row in rows]
    assert specs[0] == "gemma-3-270m"
    assert set(ALIASES) <= set(specs)
    assert "hf:<hub id or folder>" in specs and "provider/model" in specs
    for row in rows:
        assert set(row) == {"spec", "kind", "target", "description", "cached", "location"}
    embedded = rows[0]
    assert isinstance(embedded["cached"], bool) and embedded["location"].endswith("gemma-3-270m")
    for row in rows:
        if row["spec"] in ALIASES:
            assert row["target"] == ALIASES[row["spec"]]
            assert isinstance(row["cached"], bool)
            if not row["cached"]:
                assert f"hf download {row['target']}" in row["location"]


def test_catalog_sees_a_model_in_the_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    hub = tmp_path / "hub"
    snapshot = hub / "models--Qwen--Qwen2.5-0.5B-Instruct" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (hub / "models--Qwen--Qwen2.5-0.5B-Instruct" / "refs").mkdir()
    (hub / "models--Qwen--Qwen2.5-0.5B-Instruct" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    rows = {row["spec"]: row for row in list_models()}
    assert rows["qwen2.5-0.5b"]["cached"] is True
    assert rows["qwen2.5-0.5b"]["location"] == str(snapshot)
    assert rows["qwen2.5-7b"]["cached"] is False
