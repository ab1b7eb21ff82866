"""The repository root is the `smelt` package: a built wheel holds the CLI, every package and the shipped data,
nothing else, and runs from any directory once installed."""

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("commands", "serving", "eval", "eval/reports", "lifecycle", "lm", "optimizers", "optimizers/distill",
            "optimizers/sweep", "programs", "signatures")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: build with this venv's setuptools, downloading nothing.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(out), str(ROOT)], check=True, capture_output=True, text=True, timeout=300)
    (found,) = out.glob("smelt-*.whl")
    return found


def test_wheel_holds_the_cli_packages_and_data_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    files = [n for n in names if not n.split("/")[0].endswith(".dist-info")]
    assert "smelt/cli.py" in files and "smelt/__init__.py" in files and "smelt/lifecycle/__init__.py" in files
    for package in PACKAGES:
        assert f"smelt/{package}/__init__.py" in files, package
    for split in ("train", "dev", "test", "documents"):
        assert f"smelt/data/doc_qa/{split}.jsonl" in files
    assert all(n.startswith("smelt/") for n in files), [n for n in files if not n.startswith("smelt/")]
    for stray in ("tests/", "bench/", "runs/", ".venv/", "build/", "setup.sh", "README.md", "pyproject.toml"):
        assert not any(n.startswith(f"smelt/{stray}") for n in files), stray
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "smelt = smelt.cli:cli" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_runs_from_any_directory(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path"
                                "('purelib'))"], capture_output=True, text=True, check=True).stdout.strip())
    # The dependencies come from this venv (a plain path entry: its editable smelt finder is not activated).
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, text=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import smelt; print(smelt.__file__)"], cwd=elsewhere,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(site), where
    result = subprocess.run([str(venv / "bin" / "smelt"), "tasks"], cwd=elsewhere, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "doc_qa" in result.stdout and "rag_qa" in result.stdout
    data = subprocess.run([str(venv / "bin" / "python"), "-c", "from smelt.programs.registry import get_task; "
                           "s = get_task('rag_qa').shipped_data(); print(len(s.train), len(s.test))"],
                          cwd=elsewhere, capture_output=True, text=True, timeout=120)
    assert data.returncode == 0, data.stderr
    assert data.stdout.split() == ["48", "36"]


def test_architecture_layout_matches_the_root():
    architecture = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = architecture.split("## Layout", 1)[1].split("```", 2)[1]
    listed = {line.split()[0].rstrip("/") for line in section.splitlines() if line.strip()}
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    top = {name.split("/")[0] for name in tracked if not name.startswith(".")}
    if not tracked:  # not a git checkout: what is on disk, less the ignored outputs
        top = {p.name for p in ROOT.iterdir() if not p.name.startswith(".") and p.name not in ("runs", "build")}
    assert listed == top
