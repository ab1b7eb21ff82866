"""Shared fixtures. The embedded model is loaded once per test session; every engine test reuses it."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def embedded_model():
    """The embedded Gemma 3 270M on CPU (converted on first use, then read from the smelt cache)."""
    from smelt.lm.loading import load_model
    from smelt.lm.specs import parse_spec

    return load_model(parse_spec("gemma-3-270m"), device="cpu")


@pytest.fixture
def embedded_lm(embedded_model):
    """A ``ResolvedLM`` on the session's model, DSPy cache off. Its engine is the model's one shared engine; closing
    it afterwards empties ``batch_sizes`` for the next test (the engine stays usable)."""
    from smelt.lm import lm_for_spec

    resolved = lm_for_spec("gemma-3-270m", device="cpu", max_tokens=16, cache=False)
    yield resolved
    resolved.engine.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Runs and bad data files for the user-mistake cases (tests/mistakes.py), built once per test module."""
    from mistakes import build_world

    return build_world(tmp_path_factory.mktemp("bad_inputs"))


@pytest.fixture
def mount_tmpfs(tmp_path):
    """``mount_tmpfs(name, size_kb, read_only=False)``: a tmpfs of its own, unmounted afterwards. Root ignores a
    folder's permissions, not a read-only or full file system: the tests of a failing disk mount one."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root and must test full and read-only disks with tmpfs mounts")
        pytest.skip("mounting a tmpfs needs root")
    mounted = []

    def mount(name: str, size_kb: int, read_only: bool = False) -> Path:
        point = tmp_path / name
        point.mkdir()
        options = f"size={size_kb}k" + (",ro" if read_only else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], check=True)
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=False)
