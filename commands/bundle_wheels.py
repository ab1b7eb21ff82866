"""The wheels of a bundle: smelt's own, built from the files git tracks in the checkout, and its dependencies', chosen
by pip for the target interpreter and platform and downloaded, torch left out unless asked for.

1. ``build_smelt_wheel``: ``pip wheel --no-deps`` of the files git tracks in the checkout (``bundle_source``).
2. ``resolve``: ``pip install --dry-run --report`` of that wheel for the target, pinned to the versions this
   interpreter runs (what was tested here): pip reads package metadata only, nothing is installed.
3. ``needed``: the resolved packages smelt reaches without going through torch (unless --with-torch): a GPU box
   brings its own CUDA PyTorch, and with it the packages only torch needs (nvidia-*, triton, sympy, ...).
4. ``download``: those exact files (with their sha256 checked) into the bundle, with ``pip download --no-deps``.

pip runs as a subprocess of this interpreter, so it uses the machine's pip configuration (indexes, find-links,
certificates), as ``pip download`` would.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from smelt.commands.bundle_source import tracked_copy
from smelt.errors import SmeltError

# Left out of a bundle made without --with-torch, with what only it needs: a GPU box brings its own.
TORCH = "torch"


@dataclass(frozen=True)
class Target:
    """The machine the bundle is for: a Python version and a platform tag as ``pip download`` takes them, or this
    interpreter's where not given."""

    python_version: str | None = None  # "3.12"
    platform: str | None = None  # "manylinux_2_28_x86_64"

    def __post_init__(self):
        if self.python_version is not None:
            if not re.fullmatch(r"3\.\d{1,2}", self.python_version):
                raise SmeltError(f"--python-version {self.python_version}: give the target's major.minor, e.g. 3.12")
            if int(self.python_version.split(".")[1]) < 11:
                raise SmeltError(f"--python-version {self.python_version}: smelt needs Python 3.11 or newer")
        if self.platform is not None and not re.fullmatch(r"[a-z][a-z0-9_]*", self.platform):
            raise SmeltError(f"--platform {self.platform}: give a wheel platform tag as pip takes it, e.g. "
                             "manylinux_2_28_x86_64, manylinux_2_17_aarch64, macosx_11_0_arm64 or win_amd64")

    @property
    def python(self) -> str:
        return self.python_version or "{}.{}".format(*sys.version_info[:2])

    def pip_args(self) -> list[str]:
        args = ["--python-version", self.python_version] if self.python_version else []
        for tag in platform_tags(self.platform) if self.platform else ():
            args += ["--platform", tag]
        return args

    def describe(self) -> str:
        where = self.platform or f"{sys.platform} {platform.machine()} (this machine)"
        return f"Python {self.python} on {where}"

    def marker_environment(self) -> dict[str, str]:
        """The environment markers (PEP 508) of the target, for reading which requirements apply there."""
        from packaging.markers import default_environment

        env = dict(default_environment())
        if self.python_version:
            env.update(python_version=self.python_version, python_full_version=f"{self.python_version}.0",
                       implementation_version=f"{self.python_version}.0")
        if self.platform:
            env.update(_platform_markers(self.platform))
        return env


def platform_tags(tag: str) -> list[str]:
    """The tag and every older one the target also runs: pip takes ``manylinux_2_28_x86_64`` literally, while a
    glibc 2.28 machine also runs the manylinux_2_17 (manylinux2014) wheels many packages ship."""
    found = re.fullmatch(r"manylinux_(\d+)_(\d+)_(\w+)", tag)
    if not found:
        return [tag]
    major, minor, arch = int(found.group(1)), int(found.group(2)), found.group(3)
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, -1, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}  # PEP 600's names for glibc 2.17, 2.12, 2.5
    return tags + [f"{name}_{arch}" for glibc, name in legacy.items() if major == 2 and minor >= glibc]


def _platform_markers(tag: str) -> dict[str, str]:
    if tag.startswith(("manylinux", "musllinux", "linux")):
        machine = re.sub(r"^(manylinux|musllinux)(_\d+_\d+|\d+)?_|^linux_", "", tag)
        return {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "platform_machine": machine}
    if tag.startswith("macosx"):
        return {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix",
                "platform_machine": tag.rsplit("_", 1)[-1]}
    if tag.startswith("win"):
        machine = {"win_amd64": "AMD64", "win32": "x86", "win_arm64": "ARM64"}.get(tag, tag)
        return {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt", "platform_machine": machine}
    return {}


@dataclass(frozen=True)
class Resolved:
    """One package pip chose: its name, version, where to fetch its wheel, its sha256 and its requirements."""

    name: str  # canonical (lower case, dashes)
    version: str
    url: str
    sha256: str | None
    requires: tuple[str, ...]


def build_smelt_wheel(source: Path, wheels: Path, log) -> Path:
    """smelt's own wheel, built (``pip wheel --no-deps``) from the files git tracks in the checkout at ``source``
    (``bundle_source``), copied into a folder beside ``wheels`` first: the build writes on OUT_DIR's disk, never in
    a git checkout."""
    import importlib.util

    if not (source / "pyproject.toml").is_file():
        raise SmeltError(f"bundle builds smelt's wheel from its source checkout, and {source} is not one (no "
                         "pyproject.toml): run bundle from a checkout installed with `pip install -e .`")
    # This interpreter's setuptools when it has one (nothing fetched); else pip fetches the build backend as usual.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    with tempfile.TemporaryDirectory(prefix=".smelt-source-", dir=wheels.parent) as copy:
        built_from = tracked_copy(source, Path(copy), log)
        _pip(["wheel", "--no-deps", "--progress-bar=off", *isolation, "-w", str(wheels), str(built_from)],
             what="smelt's wheel")
    found = sorted(wheels.glob("smelt-*.whl"))
    if not found:
        raise SmeltError(f"pip wheel built no smelt wheel from {source}")
    return found[-1]


def pins() -> list[str]:
    """``name==version`` of every package this interpreter has (local labels such as +cpu dropped), smelt aside."""
    from importlib.metadata import distributions

    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    lines = {}
    for dist in distributions():
        name = canonicalize_name(dist.metadata["Name"] or "")
        try:
            version = Version(dist.version).public
        except InvalidVersion:
            continue
        if name and name != "smelt":
            lines[name] = f"{name}=={version}"
    return sorted(lines.values())


def resolve(smelt_wheel: Path, target: Target, *, with_torch: bool, log) -> list[Resolved]:
    """What pip would install for smelt on the target: every package, version and file (metadata only)."""
    from importlib.metadata import version

    log(f"[smelt] resolving smelt's dependencies for {target.describe()} (pip reads their metadata; a minute or "
        "two) ...")
    with tempfile.TemporaryDirectory(prefix="smelt-bundle-") as tmp:
        constraints, report = Path(tmp) / "constraints.txt", Path(tmp) / "report.json"
        constraints.write_text("\n".join(pins()) + "\n", encoding="utf-8")
        wanted = [str(smelt_wheel)] + ([f"{TORCH}=={_public(version(TORCH))}"] if with_torch else [])
        _pip(["install", "--dry-run", "--ignore-installed", "--only-binary=:all:", "--progress-bar=off",
              "--report", str(report), "-c", str(constraints), *target.pip_args(), *wanted],
             what=f"smelt's dependencies for {target.describe()}")
        items = json.loads(report.read_text(encoding="utf-8"))["install"]
    from packaging.utils import canonicalize_name

    resolved = []
    for item in items:
        meta, info = item["metadata"], item["download_info"]
        hashes = info.get("archive_info", {}).get("hashes", {})
        resolved.append(Resolved(canonicalize_name(meta["name"]), meta["version"], info["url"], hashes.get("sha256"),
                                 tuple(meta.get("requires_dist") or ())))
    return resolved


def needed(resolved: list[Resolved], target: Target, *, with_torch: bool) -> list[Resolved]:
    """The packages smelt needs on the target: those its requirements reach, not through torch unless with_torch.

    pip evaluates environment markers for the interpreter that runs it; a requirement that applies only on the
    target's Python and that pip therefore did not resolve is refused here, not found missing offline."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    by_name = {item.name: item for item in resolved}
    env = target.marker_environment()
    skip = set() if with_torch else {TORCH}
    roots = [("smelt", frozenset())] + ([(TORCH, frozenset())] if with_torch else [])
    seen: set[tuple[str, frozenset]] = set()
    while roots:
        name, extras = roots.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for text in by_name[name].requires:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is not None and not any(marker.evaluate({**env, "extra": extra}) for extra in extras or {""}):
                continue
            dependency = canonicalize_name(requirement.name)
            if dependency in skip:
                continue
            if dependency not in by_name:
                raise SmeltError(
                    f"{name} needs {text} on {target.describe()}, which pip did not resolve for this interpreter "
                    f"(Python {sys.version_info.major}.{sys.version_info.minor}): make the bundle with a Python "
                    f"{target.python} interpreter")
            roots.append((dependency, frozenset(requirement.extras)))
    kept = {name for name, _ in seen}
    return [item for item in resolved if item.name in kept]


def download(items: list[Resolved], wheels: Path, target: Target, log) -> None:
    """Fetch exactly these files into ``wheels`` (each checked against the sha256 pip resolved)."""
    if not items:
        return
    log(f"[smelt] downloading {len(items)} wheels ...")
    with tempfile.TemporaryDirectory(prefix="smelt-bundle-") as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text("".join(f"{item.name} @ {item.url}" + (f"#sha256={item.sha256}" if item.sha256 else "")
                                        + "\n" for item in items), encoding="utf-8")
        _pip(["download", "--no-deps", "--only-binary=:all:", "--progress-bar=off", "-d", str(wheels),
              *target.pip_args(),
              "-r", str(requirements)], what=f"the wheels for {target.describe()}")


def _public(version: str) -> str:
    return version.split("+", 1)[0]


def _pip(args: list[str], *, what: str) -> None:
    """Run this interpreter's pip; a failure is one line naming what pip could not get and pip's own reason."""
    # Not --quiet: pip explains a conflict only in its normal output.
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SmeltError(f"pip could not get {what}: {pip_reason(result.stderr + result.stdout)}")


def pip_reason(output: str) -> str:
    """pip's reason for a failure in one line: the package it found no wheel for, or its first error line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    advice = "check --python-version and --platform, or that the package index pip uses has it"
    for i, line in enumerate(lines):
        found = re.search(r"No matching distribution found for (\S+)", line)
        if found:
            return f"no wheel of {found.group(1)} fits; {advice}"
        if line.startswith("Additionally, some packages") and i + 1 < len(lines):  # a conflict, explained below it
            causes = lines[lines.index("The conflict is caused by:") + 1] if "The conflict is caused by:" in lines \
                else ""
            return f"no wheel of {lines[i + 1]} fits" + (f" ({causes})" if causes else "") + f"; {advice}"
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")]
    return errors[0] if errors else (lines[-1] if lines else "no output")
