"""Peak memory of merging a LoRA adapter into the embedded model: smelt's merge against two anchors, in one run.

The student is gemma-3-270m loaded as the tests load it (``load_for_training``: fp32 on the CPU); the adapter has
random weights (B not zero) on the attention projections (distill's default) or on every linear layer. Each merge
runs in a fresh process: the added memory is the process's peak resident set during the merge (VmHWM, reset just
before it) less its resident set before it, and covers the merge and writing the folder. The merges:

- ``by-hand``: what smelt did before peft merged: W + scaling * B @ A for each adapted layer into a state dict
  beside the model, written with ``save_pretrained(state_dict=...)`` (plain LoRA only);
- ``peft-full-copy``: ``copy.deepcopy`` of the student, ``PeftModel.from_pretrained``, ``merge_and_unload``;
- ``smelt``: ``merge_adapter``: peft's merge into a copy that shares every weight the adapter leaves alone;
- ``save-only``: no merge, the student written as it is (the floor: what writing the folder costs).

    python -m bench.merge_memory [--targets attention all-linear]   # from the repository root, Linux
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from bench.machine import cpu_name

MERGES = ("by-hand", "peft-full-copy", "smelt", "save-only")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _student():
    from smelt.lm.specs import parse_spec
    from smelt.optimizers.distill.lora_config import LoraTrainingConfig
    from smelt.optimizers.distill.lora_model import load_for_training

    return load_for_training(parse_spec("gemma-3-270m"), LoraTrainingConfig(), device="cpu")


def write_adapter(folder: Path, targets: str) -> None:
    import torch
    from peft import get_peft_model

    from smelt.lm.loading import peft_quietly
    from smelt.optimizers.distill.lora_config import LoraTrainingConfig
    from smelt.optimizers.distill.lora_model import peft_lora_config

    student = _student()
    config = LoraTrainingConfig(**({"target_modules": "all-linear"} if targets == "all-linear" else {}))
    torch.manual_seed(0)
    with peft_quietly():
        peft_model = get_peft_model(student.model, peft_lora_config(config))
    for name, parameter in peft_model.named_parameters():
        if ".lora_B." in name:
            torch.nn.init.normal_(parameter, std=0.02)
    peft_model.save_pretrained(folder)


def merge_by_hand(model, adapter_dir: Path, out_dir: Path, tokenizer) -> None:
    """The merge smelt shipped before it used peft's (the anchor)."""
    from safetensors.torch import load_file

    settings = json.loads((adapter_dir / "adapter_config.json").read_text())
    scaling = settings["lora_alpha"] / (math.sqrt(settings["r"]) if settings.get("use_rslora") else settings["r"])
    state = {key.replace(".base_layer.", "."): t for key, t in model.state_dict().items() if ".lora_" not in key}
    adapter = load_file(str(adapter_dir / "adapter_model.safetensors"))
    for key, a in adapter.items():
        if ".lora_A." not in key:
            continue
        layer = key.split(".lora_A.")[0].removeprefix("base_model.model.")
        weight = state[f"{layer}.weight"]
        delta = adapter[key.replace(".lora_A.", ".lora_B.")].float() @ a.float() * scaling
        state[f"{layer}.weight"] = (weight.float() + delta.to(weight.device)).to(weight.dtype)
    model.save_pretrained(out_dir, state_dict=state)
    tokenizer.save_pretrained(out_dir)


def merge_full_copy(model, adapter_dir: Path, out_dir: Path, tokenizer) -> None:
    import copy

    from peft import PeftModel

    merged = PeftModel.from_pretrained(copy.deepcopy(model), str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def save_only(model, adapter_dir: Path, out_dir: Path, tokenizer) -> None:
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def measure(merge: str, adapter_dir: Path, out_dir: Path) -> dict:
    """One merge in this process: MiB added at the peak, and seconds."""
    from smelt.optimizers.distill.lora_model import merge_adapter

    student = _student()
    function = {"by-hand": merge_by_hand, "peft-full-copy": merge_full_copy, "smelt": merge_adapter,
                "save-only": save_only}[merge]
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    function(student.model, adapter_dir, out_dir, tokenizer=student.tokenizer)
    seconds = time.perf_counter() - start
    return {"added_mib": (_status_kib("VmHWM") - before) / 1024, "seconds": seconds,
            "weights_mib": sum(p.numel() * p.element_size() for p in student.model.parameters()) / 2**20}


def _child(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "bench.merge_memory", *args], check=True, capture_output=True,
                          text=True)
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=["attention", "all-linear"],
                        choices=["attention", "all-linear"])
    parser.add_argument("--write-adapter", nargs=2, metavar=("FOLDER", "TARGETS"), help=argparse.SUPPRESS)
    parser.add_argument("--measure", nargs=3, metavar=("MERGE", "ADAPTER", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.write_adapter:
        write_adapter(Path(args.write_adapter[0]), args.write_adapter[1])
        return 0
    if args.measure:
        print(json.dumps(measure(args.measure[0], Path(args.measure[1]), Path(args.measure[2]))))
        return 0
    print(f"# merge memory, gemma-3-270m fp32 on CPU: {cpu_name()}, {platform.system()} {platform.release()}, "
          f"torch {version('torch')}, transformers {version('transformers')}, peft {version('peft')}")
    with tempfile.TemporaryDirectory() as tmp:
        for targets in args.targets:
            adapter = Path(tmp) / f"adapter-{targets}"
            _child("--write-adapter", str(adapter), targets)
            results = {m: _child("--measure", m, str(adapter), str(Path(tmp) / f"{targets}-{m}")) for m in MERGES}
            weights = results["smelt"]["weights_mib"]
            anchor = results["by-hand"]["added_mib"]
            print(f"\n## adapter on {targets} (student weights {weights:.0f} MiB)")
            print("| merge | added at peak (MiB) | x by-hand | x weights | seconds |\n|---|---|---|---|---|")
            for merge, r in results.items():
                print(f"| {merge} | {r['added_mib']:.0f} | {r['added_mib'] / anchor:.2f} | "
                      f"{r['added_mib'] / weights:.2f} | {r['seconds']:.1f} |")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
