#!/usr/bin/env bash
# One prepared check of a CUDA box, in at most 6 minutes: what a few minutes on a GPU should measure.
#
#   bash bench/gpu_check.sh [OUT_DIR]            # on a CUDA machine (default OUT_DIR: gpu-check-<date>-<time>)
#   SMALL=1 bash bench/gpu_check.sh [OUT_DIR]    # the same phases on a CPU with a tiny model (what CI runs)
#
# Phases, each under its own `timeout` (a hang costs that phase only; the others keep their results):
#   env      GPU, driver, CUDA, torch / transformers / peft versions           -> OUT/env.json
#   model    a Llama-3.2-3B-shaped model with random weights, built here from its config, the embedded model's
#            tokenizer (nothing downloaded)                                    -> OUT/model-3b/, OUT/model.json
#   lora     LoRA tokens/s and MFU on it, smelt's loop vs Trainer + peft      -> OUT/lora.json
#   engine   smelt's engine vs sequential generate vs generate_batch on doc_qa prompts (fixed max tokens)
#                                                                              -> OUT/engine.json
#   compile, distill, sweep   short smelt runs on that model (--lm / --student hf:OUT/model-3b)  -> OUT/runs/
# Each phase's exit code, wall time and peak GPU / resident memory go to OUT/phases/; its output to OUT/logs/.
# At the end: OUT/summary.md and OUT/summary.json (bench/gpu_check_summary.py), the markdown also printed; the exit
# status is 1 when a phase failed or timed out, 2 when the environment phase did (no CUDA: use SMALL=1).
#
# PYTHON picks the interpreter (default .venv/bin/python, else python3); LIMIT_<PHASE> (seconds) a phase's timeout.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
SMALL=${SMALL:-0}
OUT=${1:-gpu-check-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/logs" "$OUT/phases" "$OUT/runs"
OUT=$(cd "$OUT" && pwd)
export HF_HUB_OFFLINE=1  # nothing is downloaded: a phase that would reach the hub fails at once instead

if [ "$SMALL" = 1 ]; then  # a tiny model on a CPU: every phase, minutes on a busy 2-core machine
  DEVICE=cpu SHAPE=tiny
  : "${LIMIT_ENV:=120}" "${LIMIT_MODEL:=240}" "${LIMIT_LORA:=300}" "${LIMIT_ENGINE:=300}" "${LIMIT_COMPILE:=300}"
  : "${LIMIT_DISTILL:=420}" "${LIMIT_SWEEP:=480}"
  LORA=(--steps 3 --batch-size 2 --max-length 256)
  ENGINE=(--n 4 --threads 4 --answer-tokens 16)
  WORKERS=1
else  # the limits add up to 6 minutes
  DEVICE=cuda SHAPE=3b
  : "${LIMIT_ENV:=20}" "${LIMIT_MODEL:=50}" "${LIMIT_LORA:=65}" "${LIMIT_ENGINE:=75}" "${LIMIT_COMPILE:=40}"
  : "${LIMIT_DISTILL:=50}" "${LIMIT_SWEEP:=60}"
  LORA=(--steps 4 --batch-size 4 --max-length 2048)
  ENGINE=(--n 16 --threads 16 --answer-tokens 64)
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c "^GPU" || true)
  WORKERS=$(( gpus >= 2 ? 2 : 1 ))  # two GPUs: the sweep runs one worker on each
fi
MODEL="$OUT/model-$SHAPE"
# The smoke runs: a few examples each, the answers of random weights scored as they come.
RUN=(--device "$DEVICE" --runs-root "$OUT/runs" --no-cache --threads 8 --max-train 8 --max-dev 2 --max-test 2
     --latency-sample 0)

phase() {  # phase NAME LIMIT COMMAND...: COMMAND under its own timeout; its record in OUT/phases/NAME.json
  local name=$1 limit=$2 started rc pid sampler
  shift 2
  echo "[gpu_check] $name (at most ${limit} s): $*"
  started=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" >"$OUT/logs/$name.log" 2>&1 &
  pid=$!
  "$PY" -m bench.gpu_check_memory "$pid" "$OUT/phases/$name.memory.json" &
  sampler=$!
  trap 'kill $pid $sampler 2>/dev/null; exit 130' INT TERM
  wait "$pid"
  rc=$?
  kill "$sampler" 2>/dev/null
  wait "$sampler" 2>/dev/null
  trap - INT TERM
  "$PY" -m bench.gpu_check record "$OUT" "$name" "$rc" "$started" "$(date +%s.%N)" "$limit"
  return "$rc"
}

if ! phase env "$LIMIT_ENV" "$PY" -m bench.gpu_check env --device "$DEVICE" --out "$OUT/env.json"; then
  tail -n 3 "$OUT/logs/env.log" >&2
  "$PY" -m bench.gpu_check summarize "$OUT" >/dev/null
  exit 2
fi
failed=0
phase model "$LIMIT_MODEL" "$PY" -m bench.gpu_check model --shape "$SHAPE" --device "$DEVICE" --out "$MODEL" || failed=1
phase lora "$LIMIT_LORA" "$PY" -m bench.lora_throughput --gpu-mfu --model "$MODEL" --device "$DEVICE" \
  --compare-trainer --json "$OUT/lora.json" "${LORA[@]}" || failed=1
phase engine "$LIMIT_ENGINE" "$PY" -m bench.engine_throughput --model "hf:$MODEL" --device "$DEVICE" \
  --transformers-batch --json "$OUT/engine.json" "${ENGINE[@]}" || failed=1
phase compile "$LIMIT_COMPILE" "$PY" cli.py compile doc_qa --lm "hf:$MODEL" --optimizer labeled "${RUN[@]}" || failed=1
teacher=$(ls -d "$OUT"/runs/doc_qa/*-compile 2>/dev/null | tail -n 1)
phase distill "$LIMIT_DISTILL" "$PY" cli.py distill doc_qa --student "hf:$MODEL" --teacher "${teacher:-hf:$MODEL}" \
  --epochs 1 "${RUN[@]}" || failed=1
# No optimizer that has the model write prompts; bootstrap (the default) is trial 0, so nothing runs twice.
printf 'optimizer: [none, labeled, bootstrap]\npredictor: predict\n' >"$OUT/sweep-space.yaml"
phase sweep "$LIMIT_SWEEP" "$PY" cli.py sweep doc_qa --lm "hf:$MODEL" --trials 2 --space "$OUT/sweep-space.yaml" \
  --workers "$WORKERS" "${RUN[@]}" || failed=1
"$PY" -m bench.gpu_check summarize "$OUT"
echo "[gpu_check] written: $OUT/summary.md, $OUT/summary.json"
exit "$failed"  # 1 when a phase failed or timed out (the summary says which)
