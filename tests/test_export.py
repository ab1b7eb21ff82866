"""export: a distilled run out to transformers, peft, llama.cpp and Ollama, each sending the program's exact prompt.

One tiny distill run of doc_qa on the embedded model (trained hard on two examples, so that the adapter changes
answers), exported in every format: plain transformers on the merged folder answers as smelt's own eval did; the
peft folder loads with peft onto the base it names; the GGUF files answer the same on llama.cpp (the xllamacpp
wheel); the Modelfile, read and rendered as Ollama does, writes the prompt smelt sends, byte for byte.
"""

import contextlib
import json
import re
from pathlib import Path

import pytest
import torch
from dspy.utils.exceptions import AdapterParseError
from mistakes import run_mistake

from smelt.commands.common import DataOptions
from smelt.commands.distill import DistillOptions, run_distill
from smelt.commands.export import ExportOptions, export_run
from smelt.commands.export_ollama import modelfiles
from smelt.commands.export_prompt import prompt_spec, render_prompt
from smelt.lifecycle.reloaded_run import load_program, load_run
from smelt.lm.embedded import embedded_model_dir
from smelt.lm.prefill_adapter import PrefillChatAdapter
from smelt.lm.rendering import render_transcript
from smelt.programs.registry import get_task

ROOT = Path(__file__).resolve().parents[1]
TINY = DataOptions(max_train=2, max_dev=0, max_test=3)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory) -> Path:
    options = DistillOptions(task="doc_qa", student="gemma-3-270m", teacher="gemma-3-270m", threads=3,
                             runs_root=str(tmp_path_factory.mktemp("runs")), data=TINY, min_score=0.0,
                             teacher_attempts=1, latency_sample=0, cache=False,
                             lora={"epochs": 3, "batch_size": 1, "r": 8, "learning_rate": 3e-3})
    run_dir, _, _ = run_distill(options, log=lambda message: None)
    return run_dir


@pytest.fixture(scope="module")
def exports(distilled, tmp_path_factory) -> dict:
    """Each format once: format label -> OUT."""
    root = tmp_path_factory.mktemp("exports")
    made = {}
    for label, fmt, quant in (("hf", "hf", "f16"), ("peft", "peft", "f16"), ("gguf", "gguf", "f16"),
                              ("ollama", "ollama", "q4_k_m")):
        outcome = export_run(ExportOptions(str(distilled), str(root / label), format=fmt, quant=quant),
                             log=lambda message: None)
        assert {"prompt.json", "README.txt"} <= set(outcome.files)
        assert all((outcome.out / name).is_file() for name in outcome.files)
        made[label] = outcome.out
    return made


def _records(run_dir: Path, name: str = "test") -> list[dict]:
    lines = (run_dir / "eval" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _predictor_inputs(run_dir: Path, record: dict) -> dict:
    """What the program hands its predictor for a record's inputs (doc_qa: the document's best passages)."""
    program = load_program(run_dir)[3]
    inputs = record["inputs"]
    return {"document": program.passages(inputs["document"], inputs["question"]), "question": inputs["question"]}


def _entry(out: Path) -> dict:
    return json.loads((out / "prompt.json").read_text(encoding="utf-8"))["predictors"]["answer"]


def _answer(text: str, stops: list[str]) -> str:
    """A completion cut as smelt cuts it (a stop counts after the first non-blank character), stripped."""
    start = len(text) - len(text.lstrip())
    ends = [i for i in (text.find(stop, start) for stop in stops) if i >= 0]
    return (text[:min(ends)] if ends else text).strip()


def test_prompt_json_gives_the_token_ids_smelt_sends(distilled, exports):
    entry = _entry(exports["hf"])
    assert entry["before"] == "" and entry["prefill"] == "[[ ## answer ## ]]\n" and entry["max_tokens"] == 64
    assert "Your input fields are" not in entry["prompt"]  # the student's prompt has no instructions
    loaded = load_run(distilled, cache=False)
    sent = []
    engine = loaded.lm.engine
    original = engine._submit  # every request reaches the engine's queue here
    engine._submit = lambda *jobs: sent.extend(job.prompt_ids for job in jobs) or original(*jobs)
    try:
        with loaded.lm.context(), contextlib.suppress(AdapterParseError):
            for record in _records(distilled):
                loaded.program(**record["inputs"])
    finally:
        engine._submit = original
    tokenizer = engine.tokenizer
    expected = [tokenizer(render_prompt(entry, _predictor_inputs(distilled, r)))["input_ids"]
                for r in _records(distilled)]
    assert sent == expected


def test_the_merged_folder_answers_with_plain_transformers_as_smelt_eval_did(distilled, exports):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, entry = exports["hf"], _entry(exports["hf"])
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(out)
    answers, predictions = [], []
    for record in _records(distilled):
        ids = tokenizer(render_prompt(entry, _predictor_inputs(distilled, record)), return_tensors="pt")
        generated = model.generate(**ids, max_new_tokens=entry["max_tokens"], do_sample=False)
        answers.append(_answer(tokenizer.decode(generated[0, ids["input_ids"].shape[1]:], skip_special_tokens=True),
                               entry["stop"]))
        predictions.append(record["prediction"])
    assert answers == predictions
    assert predictions != [r["prediction"] for r in _records(distilled, "student.test")]  # the adapter tells
    name = "model.layers.0.self_attn.q_proj.weight"  # an adapted weight: the adapter is merged in, not dropped
    with safe_open(str(out / "model.safetensors"), "pt") as merged, \
            safe_open(str(embedded_model_dir() / "model.safetensors"), "pt") as base:
        assert not torch.equal(merged.get_tensor(name), base.get_tensor(name))


def test_the_peft_folder_loads_with_peft_on_the_base_it_names(exports):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = exports["peft"]
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "adapter_config.json",
                                                     "adapter_model.safetensors", "prompt.json"]
    base = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base == str(embedded_model_dir())
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), str(out))
    merged = AutoModelForCausalLM.from_pretrained(exports["hf"], dtype=torch.float32)
    ids = AutoTokenizer.from_pretrained(base)(render_prompt(_entry(out), {"document": "The library opens at 9.",
                                                                          "question": "When?"}), return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(adapted(**ids).logits, merged(**ids).logits, atol=1e-3)
    assert f"--lora-modules smelt-doc-qa={out}" in (out / "README.txt").read_text()


def test_the_gguf_files_answer_on_llama_cpp_as_smelt_eval_did(distilled, exports):
    import xllamacpp

    entry = _entry(exports["gguf"])
    prompts = [render_prompt(entry, _predictor_inputs(distilled, r)) for r in _records(distilled)]
    predictions = [r["prediction"] for r in _records(distilled)]
    for model, adapter in ((exports["gguf"] / "model-f16.gguf", None),
                           (exports["ollama"] / "model-q4_k_m.gguf", exports["ollama"] / "adapter.gguf")):
        params = xllamacpp.CommonParams()
        params.model.path, params.n_ctx, params.n_parallel = str(model), 2048, 1
        if adapter:
            params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(adapter), 1.0)]
        server = xllamacpp.Server(params)
        answers = [server.handle_completions({"prompt": prompt, "n_predict": entry["max_tokens"], "temperature": 0,
                                              "stop": entry["stop"]})["choices"][0]["text"].strip()
                   for prompt in prompts]
        del server
        assert answers == predictions, model.name


# ------------------------------------------------------------------------------------- the Ollama Modelfile


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """(command, value) pairs as Ollama's Modelfile parser reads them (parser/parser.go: a rune-by-rune state
    machine; a value ends at whitespace once it unquotes, and keeps printable characters, spaces and line breaks)."""
    commands, state, buffer, command = [], "nil", "", ""
    for char in text:
        space, newline = char in " \t", char in "\r\n"
        if state == "nil":
            following, kept = ("comment", None) if char == "#" else ("nil", None) if space or newline else \
                ("name", char)
        elif state == "name":
            assert char.isalpha() or space, f"bad command name {buffer + char!r}"
            following, kept = ("name", char) if char.isalpha() else ("value", None)
        elif state == "parameter":
            following, kept = ("parameter", char) if char.isalnum() or char == "_" else ("value", None)
        elif state == "value":
            following, kept = ("nil", char) if space or newline else ("value", char)
        else:  # a comment
            following, kept = ("nil", None) if newline else ("comment", None)
        if following != state:
            if state == "name":
                command = {"from": "model"}.get(buffer.lower(), buffer.lower())
                following = "parameter" if command == "parameter" else following
            elif state == "parameter":
                command = buffer
            elif state == "value":
                value = _unquote(buffer.strip())
                if value is None or space:
                    buffer += char
                    continue
                commands.append((command, value))
            buffer, state = "", following
        if kept is not None and kept.isprintable():
            buffer += kept
    if state == "value":
        commands.append((command, _unquote(buffer.strip())))
    return commands


def _unquote(text: str) -> str | None:
    if text.startswith('"""'):
        return text[3:-3] if len(text) >= 6 and text.endswith('"""') else None
    if text.startswith('"'):
        return text[1:-1] if len(text) >= 2 and text.endswith('"') else None
    return text


def render_go_template(template: str, prompt: str) -> str:
    """The subset of Go's text/template the Modelfile uses: literal text, ``{{ .Prompt }}`` and string constants."""
    pieces = []
    for part in re.split(r"(\{\{.*?\}\})", template, flags=re.S):
        if not part.startswith("{{"):
            pieces.append(part)
            continue
        action = part[2:-2].strip()
        if action == ".Prompt":
            pieces.append(prompt)
        else:
            assert re.fullmatch(r'"(?:[^"\\]|\\.)*"', action), f"an action beyond the subset: {part}"
            pieces.append(json.loads(action))
    return "".join(pieces)


def _commands(modelfile: str) -> dict[str, list[str]]:
    parsed = {}
    for command, value in parse_modelfile(modelfile):
        parsed.setdefault(command, []).append(value)
    return parsed


def test_the_modelfile_writes_the_prompt_smelt_sends_byte_for_byte(distilled, exports):
    out, entry = exports["ollama"], _entry(exports["ollama"])
    commands = _commands((out / "Modelfile").read_text(encoding="utf-8"))
    assert (out / commands["model"][0]).is_file() and (out / commands["adapter"][0]).is_file()
    assert commands["stop"] == entry["stop"] and "\n\n" in commands["stop"]
    assert commands["temperature"] == ["0"] and commands["repeat_penalty"] == ["1"]
    assert commands["num_predict"] == [str(entry["max_tokens"])]
    program = load_program(distilled)[3]
    signature = program.answer.signature
    adapter = PrefillChatAdapter(instructions=False)
    for record in _records(distilled):
        inputs = _predictor_inputs(distilled, record)
        sent = render_transcript(adapter.format(signature, [], inputs))  # the text smelt's engine tokenizes
        user_part = render_prompt({**entry, "before": "", "after": ""}, inputs)  # two inputs: .Prompt holds both
        assert render_go_template(commands["template"][0], user_part) == sent


def test_a_one_input_template_takes_the_value_itself():
    from transformers import AutoTokenizer

    task = get_task(str(ROOT / "examples" / "inquiry_routing.toml"))
    program = task.program({"predictor": "predict"})
    adapter = PrefillChatAdapter(instructions=False)
    spec = prompt_spec(program, adapter, AutoTokenizer.from_pretrained(embedded_model_dir()))
    [(name, text)] = modelfiles(spec, "model-f16.gguf", header="test").items()
    commands = _commands(text)
    assert name == "Modelfile" and commands["model"] == ["./model-f16.gguf"] and "adapter" not in commands
    signature = next(iter(program.named_predictors()))[1].signature
    for inquiry in ("ゴミの収集日はいつですか？", 'The "big" street light on 3rd Ave. {{ is out }}\n\tsince Monday'):
        sent = render_transcript(adapter.format(signature, [], {"inquiry": inquiry}))
        assert render_go_template(commands["template"][0], inquiry) == sent


# ----------------------------------------------------------------------------------------------- refusals


def _copy_run(source: Path, runs: Path, name: str, *, program: bool = True, adapter: bool = True,
              spec: str | None = None) -> Path:
    run_dir = runs / "doc_qa" / name
    run_dir.mkdir(parents=True)
    manifest = json.loads((source / "manifest.json").read_text(encoding="utf-8"))
    if spec:
        manifest["models"]["program"]["spec"] = spec
    (run_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    if program:
        (run_dir / "program.json").write_bytes((source / "program.json").read_bytes())
    if adapter:
        (run_dir / "adapter").mkdir()
        for file in (source / "adapter").iterdir():
            (run_dir / "adapter" / file.name).write_bytes(file.read_bytes())
    return run_dir


def test_mistakes_are_one_line_and_leave_every_run_as_it_was(world, tmp_path):
    runs, foreign = world["runs"], world["distillrun"]  # a distill run of the embedded student (foreign adapter)
    unfinished = _copy_run(foreign, runs, "20260101-000000-distill", program=False)
    no_adapter = _copy_run(foreign, runs, "20260101-000001-distill", adapter=False)
    hf_student = _copy_run(foreign, runs, "20260101-000002-distill", spec="hf:Qwen/Qwen2.5-0.5B-Instruct")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    work, out = tmp_path / "work", str(tmp_path / "out")
    cases = [
        ([str(world["done"]), out], ["a compile run", "nothing to export", "export a distill run"]),
        ([str(world["evalrun"]), out], ["an eval run", "holds scores but no program"]),
        ([str(unfinished), out], ["has not finished", f"distill --resume {unfinished}"]),
        ([str(no_adapter), out], [f"{no_adapter}/adapter", "no such folder"]),
        ([str(hf_student), out, "--format", "gguf"], ["--format gguf", "hf:Qwen/Qwen2.5-0.5B-Instruct",
                                                      "convert_hf_to_gguf.py"]),
        ([str(foreign), str(foreign / "export")], ["inside run", "never writes into a run directory"]),
        ([str(foreign), str(full)], [str(full), "exists and is not empty", "--force"]),
        ([str(foreign), str(runs), "--force"], [f"--force would replace {runs}", "holds run"]),
        ([str(foreign), out, "--quant", "q5"], ["--quant", "'q5' is not one of"]),
    ]
    for args, fragments in cases:
        run_mistake(world, work, ["export", *args], fragments)
    assert (full / "keep.txt").read_text() == "mine" and not (tmp_path / "out").exists()
