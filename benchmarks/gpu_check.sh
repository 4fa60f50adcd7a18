#!/usr/bin/env bash
# Issue 9's GPU checks in one device call, all on the same GPU, one after the other:
#   1. the shared anchor (gpu_anchor_bench.py, P=2048: naive and sorted batches of 16/64/128);
#   2. `cvaudit bench` on the Llama-3.1-8B shape in bf16: independent prompts and the audit
#      structure (39 synthetic-Singapore groups x 34 core questions x 2 orders);
#   3. a whole `cvaudit run` on CUDA (persona and disca) with a random SmolLM2-shaped model;
#   then a summary of the targets (benchmarks/gpu_summary.py), and
#   4. if time is left (GPU_CHECK_BUDGET_S, default 520 s), the audit structure on all 255 value
#      questions and the summary again. Expected: about 4 minutes for 1-3, 3 more for 4 (estimates
#      from the shared anchor's H100 figures; never run on a GPU yet).
# Prepare here first: bash benchmarks/gpu_prepare.sh. Dry run on a CPU: GPU_CHECK_DEVICE=cpu (and, to be
# quick, GPU_CHECK_BENCH_ARGS="--prompts 32 --max-groups 2 --naive-prompts 8" GPU_CHECK_RUN_ARGS="--questions Q1,Q2").
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
out=${OUT:-$repo/gpu-out}  # the device tool brings back at most 8 files from $OUT: these 7
mkdir -p "$out"           # env.txt anchor.log anchor.json bench.json run.log bench_all.json summary.txt
carry=$repo/.gpu-carry
dev=${GPU_CHECK_DEVICE:-cuda}
start=$SECONDS
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 CVAUDIT_CACHE=/tmp/cvaudit-gpu-cache
[ -f "$carry/gpu_anchor_bench.py" ] || { echo "gpu_check: $carry is missing: run benchmarks/gpu_prepare.sh here and carry .gpu-carry"; exit 2; }
# cvaudit without pip (nothing can be installed there): the package folders under one namespace
shim=/tmp/cvaudit-shim
rm -rf "$shim" && mkdir -p "$shim/cvaudit"
cp cvaudit/*.py "$shim/cvaudit/"
for d in audit metrics reports personas templates; do ln -s "$repo/$d" "$shim/cvaudit/$d"; done
export PYTHONPATH=$shim${PYTHONPATH:+:$PYTHONPATH}
stage() { echo; echo "=== $1 (t=$((SECONDS - start))s)"; }

stage environment
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$out/env.txt"

if [ "$dev" = cuda ]; then
  stage "shared anchor (P=2048)"
  OUT=$out P=2048 timeout 240 python3 "$carry/gpu_anchor_bench.py" 2>&1 | grep -v Warning | tee "$out/anchor.log"
  shape=llama-3.1-8b
else
  shape=${GPU_CHECK_SHAPE:-tiny}
fi

stage "cvaudit bench ($shape, independent + audit core)"
timeout 300 python3 -m cvaudit bench --shape "$shape" --device "$dev" --tokenizer "$carry/tokenizer" \
  ${GPU_CHECK_BENCH_ARGS:-} --out "$out/bench.json" 2>&1 | grep -v -i "warn\|forward_call"

stage "cvaudit run on $dev (random SmolLM2-shaped weights, synthetic SG sample)"
timeout 240 python3 benchmarks/gpu_run_check.py --device "$dev" --tokenizer "$carry/tokenizer" --out /tmp/cvaudit-gpu-run ${GPU_CHECK_RUN_ARGS:-} 2>&1 \
  | grep -v -i "warn" | tee "$out/run.log"

stage summary
python3 benchmarks/gpu_summary.py "$out" | tee "$out/summary.txt"

# the all-questions audit only while the call has time for it (the device tool stops the call at timeout_s)
left=$(( ${GPU_CHECK_BUDGET_S:-520} - (SECONDS - start) ))
if [ "$left" -gt 200 ] || [ "${GPU_CHECK_ALL:-0}" = 1 ]; then
  stage "cvaudit bench ($shape, audit on all value questions; ${left}s left)"
  timeout "$(( left > 200 ? left - 20 : 300 ))" python3 -m cvaudit bench --shape "$shape" --device "$dev" \
    --tokenizer "$carry/tokenizer" --workload audit --questions all --naive-prompts 128 ${GPU_CHECK_BENCH_ARGS:-} \
    --out "$out/bench_all.json" 2>&1 | grep -v -i "warn\|forward_call"
  stage "summary with all questions"
  python3 benchmarks/gpu_summary.py "$out" | tee "$out/summary.txt"
else
  echo "skipped the all-questions audit workload: ${left}s left"
fi
echo "done in $((SECONDS - start))s"
