"""The files smelt's wheel is built from: those git tracks in the checkout, with their content in the working tree.

The repository root is the package (pyproject.toml: package-dir {"smelt" = "."}), so a wheel built from the checkout
itself would take every ``.py`` at its root and in its package folders and every ``data/*/*.jsonl``, tracked or not:
a local notes file holding a key, a scratch script, a private data set. ``tracked_copy`` copies the tracked files into
a folder of their own and the wheel is built from that; a checkout that is not a git repository (an unpacked sdist) is
built as it is, and the log says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

from smelt.errors import SmeltError


def tracked_copy(source: Path, into: Path, log) -> Path:
    """The folder to build smelt's wheel from: ``into``, holding a copy of the files git tracks in ``source`` (as they
    are in its working tree; a tracked file deleted there stays out), or ``source`` itself where it is no git
    checkout. Logs where the wheel comes from, and how many files it would have taken that git does not track."""
    if not (source / ".git").exists():
        log(f"[smelt] {source} is not a git checkout: smelt's wheel is built from the files in it as they are, every "
            "one pyproject.toml packages")
        return source
    tracked = _tracked(source)
    for rel in tracked:
        src = source / rel
        if not os.path.lexists(src) or (src.is_dir() and not src.is_symlink()):  # deleted there, or a submodule
            continue
        (into / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, into / rel, follow_symlinks=False)
    log(f"[smelt] building smelt's wheel from the {len(tracked)} files git tracks in {source} (as they are in the "
        "working tree) ...")
    untracked = sorted(set(packaged(source)) - set(tracked))
    if untracked:
        named = ", ".join(untracked[:5]) + (", ..." if len(untracked) > 5 else "")
        log(f"[smelt] left out of smelt's wheel: {len(untracked)} files git does not track ({named}); `git add` "
            "any that smelt needs")
    return into


def _tracked(source: Path) -> list[str]:
    """The paths git tracks in ``source``, relative to it."""
    if shutil.which("git") is None:
        raise SmeltError(f"{source} is a git checkout and git is not installed: bundle builds smelt's wheel from the "
                         "files git tracks only; install git")
    result = subprocess.run(["git", "-C", str(source), "ls-files", "-z"], capture_output=True)
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip().splitlines() or ["no output"]
        raise SmeltError(f"git could not list the files it tracks in {source}: {reason[0]}")
    return [path for path in result.stdout.decode(errors="surrogateescape").split("\0") if path]


def packaged(root: Path) -> list[str]:
    """The files under ``root`` a setuptools build would put in the wheel, as pyproject.toml's [tool.setuptools]
    lists them (``packages``, ``package-dir`` and ``package-data``): every ``.py`` of each package folder and the
    package-data patterns; relative paths, tracked or not."""
    setup = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8")).get("tool", {}).get("setuptools", {})
    folders, data = setup.get("package-dir", {}), setup.get("package-data", {})
    found = set()
    for package in setup.get("packages", []):
        folder = root / _folder(package, folders)
        patterns = ["*.py", *data.get(package, []), *data.get("*", [])]
        found.update(path for pattern in patterns for path in folder.glob(pattern) if path.is_file())
    return sorted(os.path.relpath(path, root) for path in found)


def _folder(package: str, folders: dict[str, str]) -> Path:
    """Where ``package`` lives under the root, following package-dir as setuptools does (the longest prefix)."""
    parts = package.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in folders:
            return Path(folders[prefix], *parts[i:])
    return Path(folders.get("", "."), *parts)
