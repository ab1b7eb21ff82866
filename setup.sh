#!/usr/bin/env bash
# Set up smelt in ./.venv: PyTorch first (the CPU build unless a CUDA GPU is present), then smelt itself.
#   bash setup.sh          # to run smelt
#   bash setup.sh --test   # also the test tools
set -euo pipefail
cd "$(dirname "$0")"
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    .venv/bin/python -m pip install --quiet torch          # CUDA build from PyPI
  else
    # Installed before anything that depends on torch, or pip pulls several GB of CUDA wheels.
    .venv/bin/python -m pip install --quiet torch==2.13.0
  fi
fi
.venv/bin/python -m pip install --quiet -e ".${extras}"
echo "smelt is set up in .venv (activate with: . .venv/bin/activate)"
