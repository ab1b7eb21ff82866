"""`serve RUN RUN --lm gguf:gemma-3-270m`: two distill runs of doc_qa on the embedded student, served by one process
over one llama.cpp server holding both adapters, answer each /v1/RUN_NAME/predict and each chat ``"model"`` exactly as
each run's own single-run serve does; the runs served together are refused in one line when they cannot share a base.

The runs are data written here, as distill writes them (manifest, program.json, adapter/): alpha's adapter has random
LoRA B weights on the attention projections (so that it moves the answers), beta's is peft's own initialisation (B is
zero: the base model's answers). No training runs. As in test_llamacpp_backend, requests go one at a time, in the same
order, each serve on a fresh llama.cpp server: the same computation, which must give the same answers."""

import dataclasses
import shutil
from pathlib import Path

import pytest
from mistakes import ENV

from smelt.lm.gguf_files import shipped_gguf
from tests.real_server import SmeltServe, serve_error_line

GGUF = f"gguf:{shipped_gguf()}"
QUESTIONS = [{"document": "The pool opens at 9:00 and closes at 21:00. Entry costs 400 yen.",
              "question": "How much does entry cost?"},
             {"document": "市立図書館は月曜日が休館日です。開館時間は10時から18時までです。",
              "question": "図書館の休館日はいつですか？"}]
CHAT = {"messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 12}


def _distill_run(root: Path, name: str, *, adapter_std: float, student: str = "gemma-3-270m",
                 command: str = "distill") -> Path:
    """A finished doc_qa run of ``command`` named ``name``, as distill writes it, its adapter's B weights drawn with
    ``adapter_std`` (0: peft's zeros)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from smelt.commands.distill import DistillOptions
    from smelt.files import write_json
    from smelt.lifecycle import build_manifest
    from smelt.lm.loading import load_model
    from smelt.lm.specs import parse_spec
    from smelt.programs.registry import get_task

    task, run_dir = get_task("doc_qa"), root / name
    run_dir.mkdir(parents=True)
    options = dataclasses.asdict(DistillOptions(task="doc_qa", student="gemma-3-270m", runs_root=str(root)))
    program = {"spec": student, "adapter": "adapter", "instructions": False} if command == "distill" else \
        {"spec": student}
    write_json(run_dir / "manifest.json", build_manifest(
        command=command, task=task, options=options, seed=0, models={"program": program}, data_sources={},
        program_options=task.default_options(), extra={"metric": "f1"}))
    task.program().save(str(run_dir / "program.json"))
    if command == "distill":
        torch.manual_seed(1)
        model = load_model(parse_spec("gemma-3-270m"), device="cpu", private=True).model
        adapted = get_peft_model(model, LoraConfig(r=4, lora_alpha=16,
                                                   target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
        with torch.no_grad():
            for weight_name, weight in adapted.named_parameters():
                if "lora_B" in weight_name and adapter_std:
                    weight.normal_(0, adapter_std)
        adapted.save_pretrained(run_dir / "adapter")
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    made = {"alpha": _distill_run(root / "doc_qa", "alpha", adapter_std=0.1),
            "beta": _distill_run(root / "doc_qa", "beta", adapter_std=0)}
    made["compiled"] = _distill_run(root / "doc_qa", "compiled", adapter_std=0, command="compile")
    made["other_student"] = root / "other" / "other_student"
    shutil.copytree(made["beta"], made["other_student"])
    manifest = (made["other_student"] / "manifest.json").read_text(encoding="utf-8")
    (made["other_student"] / "manifest.json").write_text(
        manifest.replace('"spec": "gemma-3-270m"', '"spec": "hf:google/gemma-3-1b-it"'), encoding="utf-8")
    made["alpha_again"] = root / "again" / "alpha"
    shutil.copytree(made["alpha"], made["alpha_again"])
    return made


def _answers(server: SmeltServe, predict_route: str, model: str | None) -> dict:
    """Each question's outputs from ``predict_route``, then the chat's reply with ``model``, one request at a time."""
    with server.client() as client:
        predicted = []
        for inputs in QUESTIONS:
            reply = client.post(predict_route, json=inputs)
            assert reply.status_code == 200, reply.text
            predicted.append(reply.json()["outputs"])
        chat = client.post("/v1/chat/completions", json={**CHAT, **({"model": model} if model else {})})
        assert chat.status_code == 200, chat.text
        return {"predict": predicted, "chat": chat.json()["choices"][0]["message"]["content"]}


def _serve_each(runs: dict, names: list[str]) -> dict:
    """Each run's own single-run serve on --lm gguf:, one after another."""
    answers = {}
    for name in names:
        server = SmeltServe(str(runs[name]), "--lm", GGUF, env=ENV)
        try:
            answers[name] = _answers(server, "/v1/predict", None)
        finally:
            assert server.stop() == 0, server.output[-3000:]
    return answers


def test_two_runs_on_one_base_answer_as_each_run_served_alone(runs):
    together = SmeltServe(str(runs["alpha"]), str(runs["beta"]), "--lm", GGUF, env=ENV)
    try:
        answers = {name: _answers(together, f"/v1/{name}/predict", name) for name in ("alpha", "beta")}
        with together.client() as client:
            assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["alpha", "beta"]
            program = client.get("/v1/beta/program").json()
            assert program["run_dir"] == str(runs["beta"]) and program["model"]["adapter"].endswith("beta/adapter")
            unnamed = client.post("/v1/predict", json=QUESTIONS[0])
            assert unnamed.status_code == 404 and "name one: POST /v1/RUN_NAME/predict" in unnamed.text
            unknown = client.post("/v1/chat/completions", json={**CHAT, "model": "gamma"})
            assert unknown.status_code == 404
            assert unknown.json()["error"]["message"] == ("model 'gamma' is not served here; the served runs are "
                                                          "alpha, beta (GET /v1/models)")
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 400  # no model named
            health = client.get("/healthz").json()
            assert health["status"] == "ok" and health["answered"] == 6
            assert {name: stats["answered"] for name, stats in health["runs"].items()} == {"alpha": 3, "beta": 3}
            assert "/v1/alpha/predict" in client.get("/openapi.json").json()["paths"]
    finally:
        assert together.stop() == 0, together.output[-3000:]
    assert answers["alpha"]["chat"] != answers["beta"]["chat"]  # "model" chose the adapter
    assert answers["alpha"]["predict"] != answers["beta"]["predict"]  # so did the route
    assert answers == _serve_each(runs, ["alpha", "beta"])


@pytest.mark.parametrize("case, expected", [
    (("compiled", "alpha"), "compiled: a compile run; runs served together must each be a distill run"),
    (("alpha", "other_student"), "other_student: its student is hf:google/gemma-3-1b-it, "),
    (("alpha", "alpha_again"), "both are named alpha, and each run is served under its folder's name"),
])
def test_runs_that_cannot_share_a_base_are_refused_in_one_line(runs, case, expected):
    line = serve_error_line(*(str(runs[name]) for name in case), "--lm", GGUF, env=ENV)
    assert expected in line


def test_several_runs_need_llamacpp(runs):
    line = serve_error_line(str(runs["alpha"]), str(runs["beta"]), env=ENV)
    assert line.endswith("several runs share one copy of their student only on llama.cpp; pass --lm "
                         "gguf:gemma-3-270m (their student gemma-3-270m's own GGUF file)")
