#!/usr/bin/env bash
# Run the CUDA-marked tests (tests/test_cuda.py and any other @pytest.mark.cuda test) in one go on a GPU machine.
#
#   tools/run_cuda_tests.sh [extra pytest arguments]
#
# Prints the torch, CUDA and cuDNN versions and the GPU's name first.  Works in a plain checkout: if resnet_spec is
# not importable (package not installed), the repository root is put on PYTHONPATH.  PYTHON selects the interpreter
# (default: python3).  Without a CUDA device every test is skipped with its reason, and the script exits 1 unless
# ALLOW_NO_CUDA=1, so that a GPU job that silently lost its GPU does not pass.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"

if ! "$python" -c "import resnet_spec" 2>/dev/null; then
    export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
    echo "resnet_spec is not installed: using the checkout ($root) through PYTHONPATH"
fi

has_cuda=0
"$python" - <<'PY' && has_cuda=1 || true
import sys

import torch

cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
print(f"torch {torch.__version__}, CUDA (build) {torch.version.cuda}, cuDNN {cudnn}, Python {sys.version.split()[0]}")
if not torch.cuda.is_available():
    print("no CUDA device is available (torch.cuda.is_available() is False)")
    sys.exit(1)
for i in range(torch.cuda.device_count()):
    props = torch.cuda.get_device_properties(i)
    print(f"GPU {i}: {props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability {props.major}.{props.minor}")
PY

status=0
"$python" -m pytest -m cuda -v -p no:cacheprovider -rs "$@" tests || status=$?
if [[ $status -eq 0 && $has_cuda -eq 0 && "${ALLOW_NO_CUDA:-0}" != "1" ]]; then
    echo "every cuda test was skipped: no CUDA device (set ALLOW_NO_CUDA=1 to accept that)" >&2
    status=1
fi
exit $status
