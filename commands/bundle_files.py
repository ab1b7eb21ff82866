"""The text files of a bundle: ``install.sh`` (offline install, then checks) and ``README.md`` (how to use it)."""

from __future__ import annotations

from smelt.commands.bundle_models import BundledModel

_INSTALL = r"""#!/usr/bin/env bash
# Install smelt from this folder, offline: bash install.sh [PYTHON]
#   PYTHON: the interpreter to install into (default: python3). A virtual environment made with
#   `python3 -m venv --system-site-packages ENV` sees the machine's own CUDA PyTorch: bash install.sh ENV/bin/python
# pip installs only the wheels in wheels/ (--no-index: no package index, no network, no pip configuration of this
# machine); then the imports are checked and `smelt tasks` runs.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${1:-python3}"
want="@PYTHON@"
have="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" || {
  echo "error: cannot run $python; pass the Python to install into: bash install.sh /path/to/python@PYTHON@" >&2
  exit 2
}
if [ "$have" != "$want" ]; then
  echo "error: this bundle holds wheels for Python $want and $python is Python $have; pass a Python $want" \
       "(bash install.sh /path/to/python$want), or make a bundle with --python-version $have" >&2
  exit 2
fi
if command -v sha256sum >/dev/null 2>&1; then
  (cd "$here/wheels" && sha256sum --quiet --check ../SHA256SUMS) || {
    echo "error: a wheel in $here/wheels does not match SHA256SUMS: copy the bundle again" >&2; exit 2; }
fi
if [ "@WITH_TORCH@" = no ] && ! "$python" -c "import torch" 2>/dev/null; then
  echo "error: $python has no torch, and this bundle holds none (it was made without --with-torch): install the" \
       "machine's CUDA build of PyTorch first (smelt needs torch>=2.4), or make the environment with" \
       "--system-site-packages so that it sees the machine's own" >&2
  exit 2
fi
env -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null \
  "$python" -m pip install --no-index --find-links "$here/wheels" --disable-pip-version-check \
  --no-warn-script-location "smelt==@VERSION@"
"$python" - <<'PY'
import importlib

for name in ("smelt", "torch", "transformers", "peft", "accelerate", "dspy", "optuna", "datasets", "matplotlib",
             "safetensors", "gguf"):
    importlib.import_module(name)
import dspy
import peft
import torch
import transformers

gpu = f"CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no CUDA GPU"
print(f"imports ok: torch {torch.__version__} ({gpu}), transformers {transformers.__version__}, "
      f"peft {peft.__version__}, dspy {dspy.__version__}")
PY
if [ -d "$here/models/gemma-3-270m" ]; then  # the embedded model, where smelt looks for it: no conversion there
  cache="$("$python" -c 'from smelt.lm.embedded import embedded_model_dir; print(embedded_model_dir())')"
  if [ ! -f "$cache/.smelt-complete" ]; then
    mkdir -p "$(dirname "$cache")"
    rm -rf "$cache.partial-$$"
    cp -R "$here/models/gemma-3-270m" "$cache.partial-$$"
    rm -rf "$cache"
    mv "$cache.partial-$$" "$cache"
  fi
  echo "embedded model gemma-3-270m: $cache"
fi
"$python" -m smelt.cli tasks
scripts="$("$python" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
echo "smelt @VERSION@ is installed: $scripts/smelt"
@MODEL_LINES@
"""


def install_script(*, python: str, version: str, with_torch: bool, models: list[BundledModel]) -> str:
    lines = [f'echo "  --lm {model.use_as("$here")}"' for model in models if not model.embedded]
    if lines:
        lines.insert(0, 'echo "models in this bundle (use as):"')
    return (_INSTALL.replace("@PYTHON@", python).replace("@VERSION@", version)
            .replace("@WITH_TORCH@", "yes" if with_torch else "no").replace("@MODEL_LINES@", "\n".join(lines)))


def readme(*, python: str, where: str, version: str, with_torch: bool, models: list[BundledModel],
           wheels: int, size: str) -> str:
    torch = ("PyTorch is in the bundle (--with-torch)." if with_torch else
             "PyTorch is not in the bundle: the machine brings its own (CUDA) build, smelt needs torch>=2.4; make "
             "the environment with `--system-site-packages` to see it.")
    text = f"""# smelt {version}, offline

For {where}: {wheels} wheels (smelt and what it needs), {size} in all. {torch}

```bash
python{python} -m venv --system-site-packages smelt-env
bash install.sh smelt-env/bin/python     # pip --no-index from wheels/, then checks the imports and runs `smelt tasks`
smelt-env/bin/smelt compile doc_qa --device cuda
```

`install.sh` installs nothing but the wheels in `wheels/` (checked against `SHA256SUMS` first) and reads no pip
configuration of the machine. `MANIFEST.json` lists every wheel (name, version, sha256, size) and model.
"""
    if models:
        text += "\n## Models\n\n" + "".join(
            f"- `{model.spec}`: `models/{model.name}/`, use as `--lm {model.use_as()}`\n" for model in models)
        text += ("\nBUNDLE is where this folder lies on the machine. `install.sh` copies the embedded model "
                 "(`gemma-3-270m`) into smelt's cache, so it needs no conversion there.\n")
    return text
