"""How faithfully ``export --format gguf`` keeps a distilled student's answers: llama.cpp on each exported file against
smelt's own answers, in the same run.

    python -m bench.export_fidelity RUN_DIR [--split test] [--quant f16 q8_0 q4_k_m] [--max N] [--threads 8]

RUN_DIR is a finished distill run (or a sweep of stage distill). Each ``--quant`` is exported into a temporary folder
as ``python cli.py export RUN_DIR OUT --format gguf --quant Q`` writes it (``smelt.commands.export.export_run``); then
every example of the split (default: the task's whole shipped test split) is answered by smelt and on each file:

- the anchor: smelt's own answers, the run's program with its adapter on the in-process engine (greedy, fp32 on a
  CPU), scored by smelt's evaluation loop, as ``eval --program RUN_DIR`` scores it;
- each exported file on llama.cpp's server (the xllamacpp wheel, started as smelt's ``gguf:`` backend starts it, on
  the CPU), sent what a client of the export sends: for every predictor call of the program, prompt.json's prompt
  with the call's inputs (``render_prompt``), its stop strings, max_tokens and temperature; ``q4_k_m`` applies
  ``adapter.gguf`` on the shipped Q4_K_M file. The program itself still runs (doc_qa picks a long document's
  passages) and the evaluation loop scores it with the same metric, only its predictors answer from llama.cpp. Like
  any plain server, llama.cpp gets no answer pattern (smelt holds a free-text answer to one sentence while it decodes,
  ``-o constrain=true``) and stops at a stop string even before the answer's first character.

Printed per file: the mean score, its difference from smelt's, the share of answers identical to smelt's,
examples/s with ``--threads`` requests in flight (and its ratio to smelt's), the files' size and the export's time.
"""

import argparse
import json
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import dspy
import httpx

from bench.machine import cpu_name
from smelt.commands.bundle import human_size
from smelt.commands.export import ExportOptions, export_run
from smelt.commands.export_gguf import QUANTS
from smelt.commands.export_prompt import render_prompt
from smelt.errors import SmeltError
from smelt.eval.evaluate import evaluate
from smelt.eval.judge import resolve_metric
from smelt.lifecycle.reloaded_run import load_program, load_run
from smelt.lm.dspy_settings import configure_dspy
from smelt.lm.gguf_files import gguf_model
from smelt.lm.llamacpp_server import close_servers, server_for
from smelt.lm.prefill_adapter import PrefillChatAdapter
from smelt.programs.metric_names import split_grounded

SPLITS = ("train", "dev", "test")


class ExportedPredictor:
    """Stands in for one predictor of the program: answers as a server given prompt.json does (``complete``), and
    parses the completion as smelt's adapter parses the engine's (the prefilled marker, then the output fields)."""

    def __init__(self, entry: dict, signature, complete):
        self.entry, self.signature, self.complete = entry, signature, complete

    def __call__(self, **inputs) -> dspy.Prediction:
        completion = self.complete(render_prompt(self.entry, inputs), self.entry)
        return dspy.Prediction(**PrefillChatAdapter(instructions=False).parse(self.signature, completion))


def answering_from_export(program: dspy.Module, spec: dict, complete) -> dspy.Module:
    """``program`` with each predictor replaced by an ``ExportedPredictor`` of its prompt.json entry."""
    for name, predictor in list(program.named_predictors()):
        if name not in spec["predictors"]:
            raise SmeltError(f"prompt.json describes no predictor {name}; it was exported from another program")
        *path, attribute = name.split(".")
        owner = program
        for part in path:
            owner = getattr(owner, part)
        setattr(owner, attribute, ExportedPredictor(spec["predictors"][name], predictor.signature, complete))
    return program


def llamacpp_completer(model: Path, adapter: Path | None, slots: int):
    """``complete(prompt, entry)``: the text llama.cpp's server (started for ``model``, ``adapter`` applied) writes
    for a prompt with an entry's stop strings, max_tokens and temperature."""
    server = server_for(model, context_length=gguf_model(str(model)).context_length, adapters=(adapter,) if adapter
                        else (), device="cpu", slots=slots)
    client = httpx.Client(timeout=600, headers={"Authorization": f"Bearer {server.api_key}"},
                          limits=httpx.Limits(max_connections=slots))

    def complete(prompt: str, entry: dict) -> str:
        reply = client.post(f"{server.url}/completions", json={
            "prompt": prompt, "max_tokens": entry["max_tokens"], "temperature": entry["temperature"],
            "stop": entry["stop"], **server.adapter_request(adapter)})
        reply.raise_for_status()
        return reply.json()["choices"][0]["text"]

    return complete


class _NoModel:
    """The evaluation loop's ``lm`` where the predictors call their model themselves."""

    def context(self):
        return nullcontext()


def exported_files(out: Path) -> tuple[Path, Path | None]:
    """(the model file, the LoRA adapter file or None) of a gguf export."""
    [model] = out.glob("model-*.gguf")
    adapter = out / "adapter.gguf"
    return model, adapter if adapter.is_file() else None


def agreement_with_run(run_dir: Path, split: str, records: list[dict]) -> str:
    """How many of the anchor's answers are those the run's own evaluation recorded (``eval/<split>.jsonl``)."""
    path = run_dir / "eval" / f"{split}.jsonl"
    if not path.is_file():
        return f"the run recorded no {split} answers to check the anchor against"
    lines = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    recorded = {str(line["id"]): line.get("prediction") for line in lines}
    shared = [r for r in records if str(r["id"]) in recorded]
    same = sum(r["prediction"] == recorded[str(r["id"])] for r in shared)
    return f"smelt's answers here against the run's own {path.relative_to(run_dir)}: {same}/{len(shared)} identical"


def _row(name: str, records: list[dict], anchor: list[dict], seconds: float, anchor_seconds: float,
         size: int | None, export_s: float | None) -> list[str]:
    mean = sum(r["score"] for r in records) / len(records)
    anchor_mean = sum(r["score"] for r in anchor) / len(anchor)
    same = sum(r["prediction"] == a["prediction"] for r, a in zip(records, anchor, strict=True))
    rate, anchor_rate = len(records) / seconds, len(anchor) / anchor_seconds
    return [name, f"{mean:.3f}", f"{mean - anchor_mean:+.3f}", f"{same}/{len(records)} ({same / len(records):.0%})",
            f"{rate:.3f}", f"{rate / anchor_rate:.2f}x", human_size(size) if size else "-",
            f"{export_s:.0f}" if export_s is not None else "-"]


def markdown(rows: list[list[str]], metric: str) -> str:
    head = ["answers from", f"mean {metric}", "vs smelt", "identical to smelt", "examples/s", "speed vs smelt",
            "size", "export s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.export_fidelity", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished distill run (or a sweep of stage distill)")
    parser.add_argument("--split", default="test", choices=SPLITS, help="the task's shipped split (default: test)")
    parser.add_argument("--quant", nargs="+", default=list(QUANTS), choices=QUANTS,
                        help="the exports to compare (default: all)")
    parser.add_argument("--max", type=int, help="only the first N examples of the split")
    parser.add_argument("--threads", type=int, default=8,
                        help="answers in flight, on both sides; llama.cpp's server gets as many slots (default: 8)")
    parser.add_argument("--task", help="the run's TASK, needed only where it is Python code (as for export)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.max is not None and args.max < 1:
        raise SmeltError(f"--max {args.max}: must be a positive number of examples")
    configure_dspy(args.threads)
    with tempfile.TemporaryDirectory(prefix="export-fidelity-") as scratch:
        exports, export_seconds = {}, {}
        for quant in dict.fromkeys(args.quant):  # export refuses a run that is not a finished distill run
            started = time.perf_counter()
            outcome = export_run(ExportOptions(args.run_dir, str(Path(scratch) / quant), format="gguf", quant=quant,
                                               task=args.task), log=lambda message: None)
            exports[quant], export_seconds[quant] = outcome.out, time.perf_counter() - started

        loaded = load_run(args.run_dir, task_name=args.task, option="RUN_DIR", device="cpu", cache=False)
        metric_name = loaded.manifest.get("metric")
        if metric_name and split_grounded(metric_name)[0] == "judge":
            raise SmeltError(f"{args.run_dir}: scored by a judge; this benchmark compares answers with a metric that "
                             "needs no model (f1, em, fact, accuracy)")
        metric = resolve_metric(metric_name, loaded.task)
        examples = list(getattr(loaded.task.shipped_data(), args.split))[: args.max]
        if not examples:
            raise SmeltError(f"the task's {args.split} split is empty; pick another --split")

        anchor = evaluate(loaded.program, examples, metric=metric, lm=loaded.lm, threads=args.threads,
                          desc="smelt, in process")
        anchor_s = anchor.summary["wall_s"]
        engine = loaded.lm.engine
        rows = [_row(f"smelt in process ({engine.dtype}, adapter)", anchor.records, anchor.records, anchor_s,
                     anchor_s, None, None)]
        engine.close()  # its threads and memory, before llama.cpp takes the cores

        for quant, out in exports.items():
            model, adapter = exported_files(out)
            spec = json.loads((out / "prompt.json").read_text(encoding="utf-8"))
            program = answering_from_export(load_program(loaded.run_dir, task_name=args.task)[3], spec,
                                            llamacpp_completer(model, adapter, args.threads))
            result = evaluate(program, examples, metric=metric, lm=_NoModel(), threads=args.threads,
                              desc=f"llama.cpp, {quant}")
            close_servers()
            files = [model, *([adapter] if adapter else [])]
            name = f"llama.cpp {quant}: " + " + ".join(file.name for file in files)
            rows.append(_row(name, result.records, anchor.records, result.summary["wall_s"], anchor_s,
                             sum(file.stat().st_size for file in files), export_seconds[quant]))

    print(f"{loaded.task.name} {args.split}: {len(examples)} examples, {metric.name}; {loaded.run_dir}")
    print(f"{cpu_name()}, {args.threads} answers in flight on both sides (llama.cpp: {args.threads} slots, CPU)")
    print(agreement_with_run(loaded.run_dir, args.split, anchor.records))
    print(markdown(rows, metric.name))


if __name__ == "__main__":
    try:
        main()
    except SmeltError as exc:
        sys.exit(f"error: {exc}")
