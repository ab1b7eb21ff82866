#!/usr/bin/env bash
# Set up smelt in ./.venv: PyTorch first, then smelt itself (editable, so `python cli.py` and `smelt` both work).
#   bash setup.sh          # to run smelt
#   bash setup.sh --test   # also the test tools (pytest, ruff, the PostgreSQL driver)
#
# PyTorch comes first because everything else depends on it: left to pip, a plain `torch` on Linux pulls the
# CUDA build (several GB of nvidia-* wheels). So:
#   - with an NVIDIA GPU (nvidia-smi works): the CUDA build from PyPI;
#   - otherwise torch==2.13.0 from a wheelhouse pip already sees (its find-links; checked with --no-index), its
#     dependencies from PyPI; failing that, PyTorch's CPU-only wheel index (about 200 MB, not several GB).
set -euo pipefail
cd "$(dirname "$0")"
TORCH_VERSION=2.13.0
CPU_INDEX=https://download.pytorch.org/whl/cpu
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
[ -x .venv/bin/python ] || python3 -m venv .venv
pip=(.venv/bin/python -m pip install --quiet)
"${pip[@]}" --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    "${pip[@]}" torch                                   # CUDA build from PyPI
  elif "${pip[@]}" --no-index --no-deps "torch==${TORCH_VERSION}" 2>/dev/null; then
    "${pip[@]}" "torch==${TORCH_VERSION}"                # its own dependencies (filelock, sympy, ...) from PyPI
  else
    echo "setup: torch ${TORCH_VERSION} is not in a local wheelhouse; installing the CPU build from ${CPU_INDEX}"
    "${pip[@]}" --index-url "${CPU_INDEX}" "torch==${TORCH_VERSION}"
  fi
fi
"${pip[@]}" -e ".${extras}"
echo "smelt is set up in .venv (activate with: . .venv/bin/activate)"
