"""The GPU check's summary: OUT/summary.json (everything, for tools) and OUT/summary.md (for people), from what the
phases left in OUT: env.json, model.json, phases/*.json, lora.json (bench/lora_throughput.py --gpu-mfu) and
engine.json (bench/engine_throughput.py), each absent when its phase failed.

The targets: LoRA at 35% MFU or more on the 3B shape, the engine at 10x a sequential generate loop or more, and the
engine beside transformers' generate_batch. A SMALL=1 run (a tiny model on a CPU) checks the script, not them."""

import json
from pathlib import Path

PHASES = ("env", "model", "lora", "engine", "compile", "distill", "sweep")
MFU_TARGET = 0.35
ENGINE_TARGET = 10.0


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def targets(lora: dict | None, engine: dict | None, small: bool) -> list[dict]:
    """Each target with what was measured; ``met`` is None where nothing comparable was (SMALL=1, a failed phase)."""
    rows = []
    mfu = lora and lora.get("mfu")
    rows.append({"what": "LoRA MFU, 3B shape (smelt's loop)", "target": f">= {MFU_TARGET:.0%}",
                 "measured": f"{mfu:.1%}" if mfu else "n/a", "met": None if small or not mfu else mfu >= MFU_TARGET})
    ratio = engine and engine.get("ratio")
    rows.append({"what": "engine / sequential generate (examples/s)", "target": f">= {ENGINE_TARGET:g}x",
                 "measured": f"{ratio:.2f}x" if ratio else "n/a",
                 "met": None if small or not ratio else ratio >= ENGINE_TARGET})
    batch = engine and engine.get("generate_batch")
    best = engine and engine.get("drafts")
    side_by_side = f"{best['tokens_per_s']:,.0f} vs {batch['tokens_per_s']:,.0f}" if batch and best else "n/a"
    rows.append({"what": "engine vs transformers generate_batch (tokens/s)", "target": "side by side",
                 "measured": side_by_side, "met": None})
    return rows


def write_summary(out: Path) -> str:
    """Write summary.json and summary.md into ``out``; returns the markdown."""
    env, model = _read(out / "env.json"), _read(out / "model.json")
    lora, engine = _read(out / "lora.json"), _read(out / "engine.json")
    phases = [_read(out / "phases" / f"{name}.json") or {"name": name, "status": "not run", "exit_code": None}
              for name in PHASES]
    small = (model or {}).get("shape") == "tiny" or (env or {}).get("device") == "cpu"
    summary = {"small": small, "environment": env, "model": model, "phases": phases, "lora": lora, "engine": engine,
               "targets": targets(lora, engine, small)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    markdown = render(summary)
    (out / "summary.md").write_text(markdown)
    return markdown


def render(summary: dict) -> str:
    env, model, lora, engine = (summary[k] or {} for k in ("environment", "model", "lora", "engine"))
    gpus = ", ".join(f"{g['name']} ({g['memory_gib']} GiB, sm {g['capability']})" for g in env.get("gpus", [])) \
        or f"none ({env.get('cpu', '?')})"
    versions = ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items() if v)
    lines = ["# GPU check" + (" (SMALL=1: a tiny model on a CPU; it checks the script, not the targets)"
                              if summary["small"] else ""), ""]
    if env:
        cuda = f"driver {env.get('driver') or 'n/a'}, CUDA runtime {env.get('cuda_runtime') or 'n/a'}"
        lines += [f"- GPUs: {gpus}; {cuda}", f"- {versions}; Python {env.get('python')}"]
    else:
        lines.append("- environment: not recorded (see the env phase)")
    if model:
        lines.append(f"- model: {model['shape']} shape, random weights, {model['parameters'] / 1e9:.2f}B parameters, "
                     f"vocabulary {model['vocabulary']:,}, {model['dtype']}")
    lines += ["", "| phase | exit code | status | wall s | limit s | peak GPU MiB | peak RSS MiB |",
              "|---|---:|---|---:|---:|---:|---:|"]
    for p in summary["phases"]:
        lines.append(f"| {p['name']} | {_cell(p.get('exit_code'))} | {p['status']} | {_cell(p.get('wall_s'))} | "
                     f"{_cell(p.get('limit_s'))} | {_cell(p.get('peak_gpu_mib'))} | {_cell(p.get('peak_rss_mib'))} |")
    lines += ["", "## LoRA training", ""]
    if lora:
        ours, trainer = lora["smelt"], lora.get("trainer") or {}
        lines += [f"{lora['model']}, r={lora['lora_r']}, batch {lora['batch_size']} x {lora['max_length']} tokens, "
                  f"{lora['steps']} steps, {'bf16 autocast' if lora['bf16'] else 'fp32'}, gradient checkpointing "
                  f"{lora['gradient_checkpointing']}, on {lora['device_name']}", "",
                  "| loop | tokens/s (whole call) | tokens/s (steps 2+) | peak MiB |", "|---|---:|---:|---:|",
                  f"| smelt | {ours['tokens_per_s']:,.0f} | {ours['steady_tokens_per_s']:,.0f} | {ours['peak_mib']} |"]
        if trainer:
            lines.append(f"| Trainer + peft | {trainer['tokens_per_s']:,.0f} | | {trainer['peak_mib']} |")
        ratio = lora.get("ratio_smelt_over_trainer")
        lines += ["", (f"MFU: {lora['mfu']:.1%}" if lora.get("mfu") else "MFU: n/a (no GPU peak known)")
                  + (f"; smelt / Trainer + peft: {ratio:.2f}x (whole calls)" if ratio else "")]
    else:
        lines.append("no numbers: see the lora phase's log")
    lines += ["", "## Engine (doc_qa prompts; every answer runs to max tokens)", ""]
    if engine:
        lines += [f"{engine['prompts']} prompts, {engine['max_new_tokens']} new tokens each, {engine['threads']} "
                  f"threads, {engine['dtype']} on {engine['device_name']}", "",
                  "| | tokens/s | examples/s | peak GPU MiB |", "|---|---:|---:|---:|"]
        for key, label in (("anchor", "sequential generate"), ("no_drafts", "engine"), ("drafts", "engine + drafts"),
                           ("generate_batch", "transformers generate_batch")):
            if engine.get(key):
                row = engine[key]
                lines.append(f"| {label} | {row['tokens_per_s']:,.1f} | {row['examples_per_s']:.3f} | "
                             f"{_cell(row.get('peak_gpu_mib'))} |")
    else:
        lines.append("no numbers: see the engine phase's log")
    lines += ["", "## Targets", "", "| what | target | measured | met |", "|---|---|---|---|"]
    for t in summary["targets"]:
        lines.append(f"| {t['what']} | {t['target']} | {t['measured']} | "
                     f"{'n/a' if t['met'] is None else 'yes' if t['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
