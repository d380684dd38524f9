#!/usr/bin/env bash
# The GPU checks in one command of a few minutes, for a GPU machine lent briefly: the CUDA tests (all four
# families, batched and compiled runs against runs alone) and the batched benchmark's GPU suite on random data of
# the real shapes, so no dataset has to travel. Each log is named after the GPU and written to $OUT (a device
# tool's folder) or else benchmarks/results/.
#
#   bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 LTH_ENERGY=off HF_HUB_OFFLINE=1
python=${LTH_PYTHON:-python3}
gpu=$($python -c "import torch; print(torch.cuda.get_device_name(0).split()[1].lower() if torch.cuda.is_available() else 'none')")
if [ "$gpu" = none ]; then
    echo "no CUDA device here: nothing to check" >&2
    exit 1
fi
about=$($python -c "import torch; print(f'{torch.cuda.get_device_name(0)}, torch {torch.__version__}')")
{
    echo "== $(date -u +%FT%TZ) python -m pytest -q tests/test_cuda.py ($about)"
    $python -m pytest -q tests/test_cuda.py 2>&1
} | tee "$out/cuda_tests_$gpu.txt"
{
    echo "== $(date -u +%FT%TZ) python benchmarks/batched.py --suite gpu --synthetic ($about)"
    $python benchmarks/batched.py --suite gpu --synthetic 2>&1
} | tee "$out/batched_$gpu.txt"
