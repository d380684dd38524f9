#!/usr/bin/env bash
# The GPU checks in one command of a few minutes, for a GPU machine lent briefly: the CUDA tests (all four
# families, batched and compiled runs against runs alone) and the batched benchmark's GPU suite on random data of
# the real shapes, so no dataset has to travel. Each log is named after the GPU and written to $OUT (a device
# tool's folder) or else benchmarks/results/.
#
#   bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 LTH_ENERGY=off HF_HUB_OFFLINE=1
python=${LTH_PYTHON:-python3}
# The GPU's name as a file name: "NVIDIA H200" -> h200, "NVIDIA GeForce RTX 4090" -> geforce-rtx-4090.
gpu=$($python -c "
import re, sys, torch
torch.cuda.is_available() or sys.exit('no CUDA device here: nothing to check')
name = re.sub(r'^nvidia ', '', torch.cuda.get_device_name(0).lower())
print(re.sub(r'[^a-z0-9]+', '-', name).strip('-'))
") || exit 1
about=$($python -c "import torch; print(f'{torch.cuda.get_device_name(0)}, torch {torch.__version__}')")
{
    echo "== $(date -u +%FT%TZ) python -m pytest -q -n 0 tests/test_cuda.py ($about)"
    $python -m pytest -q -n 0 tests/test_cuda.py 2>&1
} | tee "$out/cuda_tests_$gpu.txt"
tests=$?
{
    echo "== $(date -u +%FT%TZ) python benchmarks/batched.py --suite gpu --synthetic ($about)"
    $python benchmarks/batched.py --suite gpu --synthetic 2>&1
} | tee "$out/batched_$gpu.txt"
benchmark=$?
echo "tests exit $tests, benchmark exit $benchmark"
[ "$tests" -eq 0 ] && [ "$benchmark" -eq 0 ]
