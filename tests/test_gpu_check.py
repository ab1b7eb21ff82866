"""bench/gpu_check.sh in SMALL=1 mode: every phase of the GPU check runs on the CPU with a tiny random-weight model
(the same script and command lines as on a CUDA box), and the summary holds each phase's exit code, wall time and
peak memory and the benchmarks' numbers. A few minutes on the 2-core test machine (most of it starting Python and
loading the libraries, once per phase)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from bench.gpu_check import record
from bench.gpu_check_summary import PHASES, write_summary

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check") / "out"
    env = {**os.environ, "SMALL": "1", "HF_HUB_OFFLINE": "1", "PYTHON": str(ROOT / ".venv" / "bin" / "python")}
    if not Path(env["PYTHON"]).exists():
        env.pop("PYTHON")
    result = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), str(out)], capture_output=True, text=True,
                            timeout=1800, env=env)
    return out, result


def test_every_phase_ran_and_is_in_the_summary(check):
    out, result = check
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["small"] is True
    assert [p["name"] for p in summary["phases"]] == list(PHASES)
    for phase in summary["phases"]:
        assert phase["exit_code"] == 0 and phase["status"] == "ok", (phase, phase.get("log_tail"))
        assert 0 < phase["wall_s"] <= phase["limit_s"] and phase["peak_rss_mib"] > 0, phase
        assert phase["peak_gpu_mib"] is None  # no GPU here
    runs = {p["name"]: p["run_dir"] for p in summary["phases"] if p["run_dir"]}
    assert runs.keys() == {"compile", "distill", "sweep"}
    assert all((Path(run) / "summary.json").is_file() for run in runs.values())
    assert (Path(runs["distill"]) / "adapter" / "adapter_model.safetensors").is_file()
    assert summary["environment"]["versions"]["torch"] and summary["environment"]["gpus"] == []
    assert summary["model"]["shape"] == "tiny" and summary["model"]["parameters"] > 0
    markdown = (out / "summary.md").read_text()
    assert markdown in result.stdout  # printed at the end too
    for name in PHASES:
        assert f"| {name} | 0 | ok |" in markdown


def test_the_benchmarks_numbers_are_there(check):
    out, _ = check
    summary = json.loads((out / "summary.json").read_text())
    lora, engine = summary["lora"], summary["engine"]
    assert lora["smelt"]["tokens_per_s"] > 0 and lora["smelt"]["steady_tokens_per_s"] > 0
    assert lora["trainer"]["tokens_per_s"] > 0 and lora["ratio_smelt_over_trainer"] > 0
    assert lora["smelt"]["tokens"] == lora["trainer"]["tokens"] == lora["steps"] * lora["batch_size"] * 256
    assert lora["mfu"] is None  # no GPU peak to divide by on a CPU
    for key in ("anchor", "no_drafts", "drafts", "generate_batch"):
        assert engine[key]["tokens_per_s"] > 0 and engine[key]["seconds"] > 0, key
        # random weights write no stop string: every answer runs to its max tokens, on every path
        assert engine[key]["generated_tokens"] == engine["prompts"] * engine["max_new_tokens"], key
    assert engine["ratio"] > 0 and engine["max_new_tokens"] == 16
    targets = {t["what"]: t for t in summary["targets"]}
    assert all(t["met"] is None for t in targets.values())  # SMALL=1 checks the script, not the targets
    assert targets["engine / sequential generate (examples/s)"]["measured"] == f"{engine['ratio']:.2f}x"


def test_a_phase_that_timed_out_or_never_ran_keeps_its_row(tmp_path):
    (tmp_path / "phases").mkdir()
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "lora.log").write_text("step 1\nstill going\n")
    record(tmp_path, "lora", 124, 100.0, 165.5, 65.0)
    markdown = write_summary(tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [p["name"] for p in summary["phases"]] == list(PHASES)
    lora = summary["phases"][PHASES.index("lora")]
    assert lora["status"] == "timed out" and lora["exit_code"] == 124 and lora["wall_s"] == 65.5
    assert lora["log_tail"] == ["step 1", "still going"]
    assert summary["phases"][0]["status"] == "not run" and "| lora | 124 | timed out | 65.5 | 65 |" in markdown
    assert "no numbers: see the lora phase's log" in markdown
