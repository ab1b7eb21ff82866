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


@pytest.mark.parametrize(
    "raw",
    ["openai/gpt-4o-mini", "ollama_chat/llama3.2", "ollama_chat/qwen2.5:7b", "hosted_vllm/Qwen/Qwen2.5-7B-Instruct"],
)
def test_provider_model_goes_to_litellm(raw):
    spec = parse_spec(raw)
    assert (spec.kind, spec.target, spec.in_process) == ("litellm", raw, False)


def test_a_provider_model_wins_over_a_folder_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "openai").mkdir()
    assert parse_spec("openai/gpt-4o-mini").kind == "litellm"


PASS_INSTEAD = ("pass a run directory (runs/<task>/<run>), hf:<folder>, an alias (see cli.py models) "
                "or provider/model (openai/gpt-4o-mini)")


@pytest.mark.parametrize("raw", ["/nonexistent", "./runs/doc_qa/none", "~/no-such-smelt-run", "../nope"])
def test_a_missing_path_is_neither_a_run_nor_a_model(raw, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SmeltError) as caught:
        parse_spec(raw, option="--teacher")
    assert str(caught.value) == (
        f"--teacher {raw}: no such run directory or model folder, and not a model spec; {PASS_INSTEAD}"
    )


def test_a_path_under_an_existing_folder_is_not_a_litellm_model(tmp_path, monkeypatch):
    # runs/<task>/<run> with a typo in the run: "runs" is a folder here, not a LiteLLM provider.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "doc_qa").mkdir(parents=True)
    with pytest.raises(SmeltError) as caught:
        parse_spec("runs/doc_qa/typo", option="--teacher")
    assert str(caught.value).startswith("--teacher runs/doc_qa/typo: no such run directory or model folder")


def test_an_existing_folder_that_is_no_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes").mkdir()
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "config.json").write_text("{}")
    with pytest.raises(SmeltError) as caught:
        parse_spec("notes", option="--teacher")
    assert str(caught.value) == (
        f"--teacher notes: not a run directory (no manifest.json there) and not a model spec; {PASS_INSTEAD}"
    )
    with pytest.raises(SmeltError) as caught:
        parse_spec("./student", option="--lm")
    assert str(caught.value) == "--lm ./student: a model folder; pass it as hf:./student to run it in-process"


def test_an_unknown_provider_is_refused_at_once():
    with pytest.raises(SmeltError) as caught:
        parse_spec("foo/bar")
    assert str(caught.value) == (
        "--lm foo/bar: 'foo' is not a LiteLLM provider; use e.g. openai/..., ollama_chat/..., hosted_vllm/... "
        "(the full list: https://docs.litellm.ai/docs/providers), or hf:foo/bar to run a hub model in-process"
    )
    with pytest.raises(SmeltError) as caught:
        parse_spec("Qwen/Qwen2.5-0.5B-Instruct", option="--student")
    assert "or hf:Qwen/Qwen2.5-0.5B-Instruct to run a hub model in-process" in str(caught.value)
    with pytest.raises(SmeltError) as caught:
        parse_spec("foo/bar/baz")
    assert str(caught.value).endswith("(the full list: https://docs.litellm.ai/docs/providers)")


def test_litellm_models_get_explicit_retries_and_timeout():
    from smelt.lm import lm_for_spec
    from smelt.lm.build import API_RETRIES, REQUEST_TIMEOUT_S

    resolved = lm_for_spec("hosted_vllm/Qwen/Qwen2.5-7B-Instruct", api_base="http://127.0.0.1:9/v1")
    assert resolved.lm.num_retries == API_RETRIES == 4
    assert resolved.lm.kwargs["timeout"] == REQUEST_TIMEOUT_S
    assert resolved.lm.kwargs["api_base"] == "http://127.0.0.1:9/v1"


def test_a_dead_server_is_retried_with_backoff_then_fails(monkeypatch):
    """DSPy owns the retries: a refused connection is retried API_RETRIES times after 1, 2, 4, 8 s. A server
    (--api-base) is called through LiteLLM, whose "Connection error." smelt's one line completes with its cause."""
    from types import SimpleNamespace

    import dspy.clients.execution as execution
    from dspy.utils.exceptions import LMError

    from smelt.errors import describe_exception
    from smelt.lm import lm_for_spec

    slept = []
    monkeypatch.setattr(execution, "time", SimpleNamespace(sleep=slept.append))  # the retry loop's sleep only
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    resolved = lm_for_spec("openai/gpt-4o-mini", api_base="http://127.0.0.1:9/v1", cache=False)
    with pytest.raises(LMError, match="Connection") as caught:
        resolved.lm("hello")
    assert slept == [1, 2, 4, 8]
    assert "Connection refused" in describe_exception(caught.value)


def test_importing_litellm_stays_offline():
    """smelt sets LITELLM_LOCAL_MODEL_COST_MAP: litellm must not fetch its cost map (no warning, no retry sleeps)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    done = subprocess.run([sys.executable, "-c", "import smelt, dspy, litellm; litellm.provider_list"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""


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
