#!/usr/bin/env bash
# The whole GPU check of issue 4 as one command for the lent GPU machine (about 15 minutes of device time
# per session, all calls together). Prepare the wheels here first (the GPU image has torch, triton, jinja2,
# rich, pytest-xdist and hypothesis, but neither lark nor Liger-Kernel, and no internet; sympy travels
# too, pinned to CI's version, since the derivations' printed forms depend on it):
#
#   scripts/gpu_session.sh --wheels          # here: downloads them into .whl/ (git-ignored)
#
# then run it there with `.whl` carried, e.g. device run: `scripts/gpu_session.sh` (timeout_s 570).
# Logs and the benchmark's JSON land in $OUT (or ./gpu_out). Budget: the triton tests on CUDA at most
# 130 s, the benchmark without torch.compile at most 170 s (row losses) and 60 s (elementwise, batch,
# int64 offsets), the LLM row's chunk sizes 60 s, then torch.compile (inductor compiles each workload) at
# most 120 s; each part is cut at its limit (its log and JSON so far kept) and the next runs.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--wheels" ]]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
        lark==1.3.1 liger-kernel==0.8.5 sympy==1.14.0 mpmath==1.3.0
    ls -l .whl
    exit
fi

OUT="${OUT:-$PWD/gpu_out}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/card.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/card.txt"

echo "== triton tests on CUDA"
timeout 130 python3 -m pytest -q -x -n 8 -p no:cacheprovider tests/test_triton.py tests/test_triton_batch.py \
    tests/test_inplace_grad.py 2>&1 | tee "$OUT/tests.log" | tail -15

echo "== benchmark: row losses"
timeout 170 python3 benchmarks/gpu_bench.py --variants lossc,lossc_inplace,lossc_forward,eager,liger --no-int64 \
    --workloads vision,llm,segmentation,segmentation-nchw --json "$OUT/bench_rows.json" 2>&1 \
    | tee "$OUT/bench_rows.log" | tail -40
echo "== benchmark: elementwise and batch losses, int64 offsets"
timeout 60 python3 benchmarks/gpu_bench.py --variants lossc,lossc_inplace,eager \
    --workloads detection-fp32,detection-bf16,anyloss-fp32 --json "$OUT/bench_other.json" 2>&1 \
    | tee "$OUT/bench_other.log" | tail -14
echo "== the LLM row's chunk size and sweep order"
timeout 60 python3 benchmarks/gpu_bench.py --chunk-sweep 2>&1 | tee "$OUT/chunks.log" | tail -12
echo "== benchmark, torch.compile"
timeout 120 python3 benchmarks/gpu_bench.py --variants compile --no-int64 \
    --json "$OUT/bench_compile.json" 2>&1 | tee "$OUT/bench_compile.log" | tail -25
