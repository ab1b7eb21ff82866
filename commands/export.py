"""``export``: a distilled student out of smelt, to where users serve models.

    hf      one merged model folder (base + adapter, safetensors, with the tokenizer): transformers, vLLM, TGI
    peft    the adapter folder as vLLM's --enable-lora and peft take it, naming the base model to serve it on
    gguf    one merged GGUF file (``export_gguf``): llama.cpp, Ollama
    ollama  that GGUF and a Modelfile whose TEMPLATE writes the program's prompt (``export_ollama``)

Every format also writes prompt.json (the exact prompt the program sends: ``export_prompt``) and README.txt (how to
serve it). OUT is written as a hidden sibling and put in place whole; a run is never written to.
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from smelt.commands.bundle import human_size
from smelt.commands.export_gguf import QUANTS, write_merged_gguf
from smelt.commands.export_ollama import modelfiles
from smelt.commands.export_readme import readme
from smelt.commands.output_folder import check_output_folder, replace_folder, work_folder
from smelt.errors import SmeltError
from smelt.files import write_json, write_text
from smelt.lifecycle.manifest import read_manifest
from smelt.lifecycle.reloaded_run import load_program, program_model, recorded_program_options
from smelt.lm.gguf_files import shipped_gguf
from smelt.lm.loading import adapter_folder
from smelt.lm.lora_gguf import write_gguf_lora
from smelt.lm.specs import parse_spec

FORMATS = ("hf", "peft", "gguf", "ollama")


@dataclass
class ExportOptions:
    run_dir: str
    out: str
    format: str = "hf"
    quant: str = "f16"  # gguf and ollama
    force: bool = False
    device: str = "cpu"  # where the merge runs
    task: str | None = None  # the run's TASK: needed only where it is Python code


@dataclass
class ExportOutcome:
    out: Path
    files: list[str]

    def describe(self) -> str:
        sizes = [f"  {name}  ({human_size((self.out / name).stat().st_size)})" for name in self.files]
        return "\n".join([f"exported to {self.out}:", *sizes, f"how to serve it: {self.out / 'README.txt'}"])


@dataclass
class _Student:
    """What a distill run exports: its program and task, the student model and the trained adapter."""

    run_dir: Path
    manifest: dict
    task: object
    program: object
    spec: object  # lm.specs.ModelSpec
    adapter: Path
    instructions: bool


def export_run(options: ExportOptions, log=print) -> ExportOutcome:
    """Write the distill run's student in ``options.format`` into ``options.out`` (see the module docstring)."""
    if options.format not in FORMATS:
        raise SmeltError(f"--format {options.format}: use one of {', '.join(FORMATS)}")
    if options.quant not in QUANTS:
        raise SmeltError(f"--quant {options.quant}: use one of {', '.join(QUANTS)}")
    student = _distilled_student(Path(options.run_dir), options.task)
    if options.format == "gguf" and student.spec.kind != "embedded":
        raise SmeltError(f"--format gguf: smelt writes GGUF only for a student it has as GGUF (the embedded "
                         f"gemma-3-270m), not {student.spec.raw}; export --format hf and convert that folder with "
                         "llama.cpp's convert_hf_to_gguf.py")
    out = check_output_folder(Path(options.out), options.force, what="an export", example="smelt-export")
    spec = _prompt_spec(student)
    work = work_folder(out)
    try:
        files = _write(student, spec, options, work, log)
        write_json(work / "prompt.json", spec)
        context = _context(student, options, out, files)
        write_text(work / "README.txt", readme(options.format, options.quant, spec, context))
        replace_folder(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ExportOutcome(out, sorted([*files, "prompt.json", "README.txt"]))


def _distilled_student(run_dir: Path, task_name: str | None) -> _Student:
    """The distill run behind RUN_DIR (or a sweep's best trial), refused in one line unless it is one with a trained
    adapter and its program."""
    manifest = read_manifest(run_dir, "RUN_DIR")
    if manifest.get("command") == "distill" and not (run_dir / "program.json").is_file():
        raise SmeltError(f"{run_dir}: the run has not finished (no program.json yet: it is saved after training); "
                         f"finish it with `python cli.py distill --resume {run_dir}`")
    _refuse_compile_run(run_dir, manifest)
    run_dir, manifest, task, program = load_program(run_dir, task_name=task_name, option="RUN_DIR", command="export")
    _refuse_compile_run(run_dir, manifest)  # a compile sweep's best trial
    recorded = program_model(manifest, run_dir)
    if not recorded.get("adapter"):
        raise SmeltError(f"{run_dir}: its program runs on {recorded['spec']} with no adapter (not a distilled "
                         "student), so there is nothing to export; export a distill run")
    adapter = adapter_folder(run_dir / recorded["adapter"])
    return _Student(run_dir, manifest, task, program, parse_spec(recorded["spec"], "RUN_DIR"), adapter,
                    recorded.get("instructions", True) is not False)


def _refuse_compile_run(run_dir: Path, manifest: dict) -> None:
    if manifest.get("command") == "compile":
        raise SmeltError(f"{run_dir}: a compile run holds prompts, not trained weights, so there is nothing to export "
                         f"(its program is {run_dir / 'program.json'}, which `serve` puts behind HTTP); export a "
                         "distill run")


def _write(student: _Student, spec: dict, options: ExportOptions, work: Path, log) -> list[str]:
    """The format's model files in ``work``; their names."""
    if options.format == "peft":
        return _write_peft(student, work)
    as_gguf = options.format == "gguf" or (options.format == "ollama" and student.spec.kind == "embedded")
    if as_gguf and options.quant == "q4_k_m":
        files = _write_base_and_lora(student, work, log)
    else:
        merged, tokenizer = _merged(student, options.device, log)
        if as_gguf:
            files = [f"model-{options.quant}.gguf"]
            log(f"[smelt] writing {files[0]} ...")
            write_merged_gguf(merged, shipped_gguf(), work / files[0], options.quant)
        else:  # hf, or an Ollama import of safetensors
            folder = work if options.format == "hf" else work / "model"
            merged.save_pretrained(folder)  # safetensors
            tokenizer.save_pretrained(folder)
            files = sorted(str(p.relative_to(work)) for p in folder.iterdir() if p.is_file())
    if options.format == "ollama":
        written = modelfiles(spec, files[0] if as_gguf else "model", header=_header(student, options),
                             adapter="adapter.gguf" if "adapter.gguf" in files else None)
        for file_name, text in written.items():
            write_text(work / file_name, text)
        files = [*files, *written]
    return files


def _write_base_and_lora(student: _Student, work: Path, log) -> list[str]:
    """q4_k_m: the shipped Q4_K_M GGUF as it is, and the adapter as a GGUF LoRA adapter for it."""
    base = shipped_gguf()
    log("[smelt] writing model-q4_k_m.gguf (the shipped file) and adapter.gguf ...")
    try:
        write_gguf_lora(student.adapter, base, work / "adapter.gguf")
    except SmeltError as exc:
        raise SmeltError(f"--quant q4_k_m: {exc}; export --quant f16 or q8_0 (the adapter merged in) instead") from None
    shutil.copyfile(base, work / "model-q4_k_m.gguf")
    return ["model-q4_k_m.gguf", "adapter.gguf"]


def _merged(student: _Student, device: str, log):
    """The student's base weights with the adapter merged in (in memory), and the base's own tokenizer."""
    from transformers import AutoTokenizer

    from smelt.lm.loading import load_model
    from smelt.optimizers.distill.lora_model import merged_copy

    log(f"[smelt] merging {student.adapter} into {student.spec.raw} ...")
    base = load_model(student.spec, device=device, dtype="auto", private=True)
    return merged_copy(base.model, student.adapter), AutoTokenizer.from_pretrained(base.source)


def _write_peft(student: _Student, work: Path) -> list[str]:
    """The adapter as vLLM's --enable-lora takes it, its base named as vLLM (and peft) would load it."""
    config = json.loads((student.adapter / "adapter_config.json").read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = student.spec.weights_source()
    write_json(work / "adapter_config.json", config)
    shutil.copyfile(student.adapter / "adapter_model.safetensors", work / "adapter_model.safetensors")
    return ["adapter_config.json", "adapter_model.safetensors"]


def _prompt_spec(student: _Student) -> dict:
    """prompt.json's content: the program's prompts as the student's tokenizer renders them."""
    from transformers import AutoTokenizer

    from smelt.commands.export_prompt import prompt_spec
    from smelt.lm.prefill_adapter import PrefillChatAdapter

    tokenizer = AutoTokenizer.from_pretrained(student.spec.weights_source())
    options = recorded_program_options(student.manifest)
    spec = prompt_spec(student.program, PrefillChatAdapter(instructions=student.instructions), tokenizer,
                       decoding={name: options[name] for name in ("constrain", "choice") if name in options})
    labels = student.task.answer_labels
    return {"task": student.task.name, "task_inputs": list(student.task.input_fields),
            **({"answer_labels": list(labels)} if labels else {}),
            "program_options": options, "student": student.spec.raw, "run": str(student.run_dir), **spec}


def _header(student: _Student, options: ExportOptions) -> str:
    if options.format == "peft":
        what = f"the distilled LoRA adapter of the student {student.spec.raw}"
    elif options.format != "hf" and options.quant == "q4_k_m" and student.spec.kind == "embedded":
        what = f"the student {student.spec.raw} (its shipped Q4_K_M GGUF) and its distilled adapter as a GGUF LoRA"
    else:
        what = f"the student {student.spec.raw} with its distilled adapter merged in"
    return f"smelt export of {student.run_dir}: task {student.task.name}, {what}"


def _context(student: _Student, options: ExportOptions, out: Path, files: list[str]) -> dict:
    config = json.loads((student.adapter / "adapter_config.json").read_text(encoding="utf-8"))
    return {"out": out, "files": files, "task": student.task.name, "student": student.spec.raw,
            "base": student.spec.weights_source(), "embedded": student.spec.kind == "embedded",
            "rank": config.get("r"), "header": _header(student, options)}
