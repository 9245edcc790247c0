#!/usr/bin/env bash
# The device check for a session lent a GPU: one short run (a few minutes), every output also under $OUT.
# The GPU image has torch and timm but not av, braceexpand, pydicom or pylibjpeg, which usjepa imports: carry
# their wheels in .whl (see the device tool's README) and they are installed first.
set -euo pipefail
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 benchmarks/gpu_step.py | tee "$out/gpu_step.txt"                                  # paper recipe, eager
python3 benchmarks/gpu_step.py --compile --steps 10 | tee "$out/gpu_step_compiled.txt"    # torch.compile
python3 benchmarks/probe_grid.py --device cuda --dim 768 --repeats 2 | tee "$out/probe_grid_cuda.txt"
