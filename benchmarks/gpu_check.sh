#!/usr/bin/env bash
# The GPU image path on a CUDA host, checked and measured in one command (a few minutes):
#   1. the CUDA tests of the nvJPEG decoder (decoding, rejection, stream safety, features vs PIL);
#   2. the host side of the path with the GPU simulated (what the CPU can feed);
#   3. the whole path with nvJPEG, then with PIL, next to the encoder-only rates.
# Usage: bash benchmarks/gpu_check.sh   (PYTHON=..., N_IMAGES=... to override)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
N=${N_IMAGES:-16384}
"$PY" -c 'import torch, torchvision; assert torch.cuda.is_available(), "no CUDA device"; print(torch.cuda.get_device_name(), "torch", torch.__version__, "torchvision", torchvision.__version__)'
"$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_features_nvjpeg.py
"$PY" benchmarks/features_host.py --n-images 32768
for decoder in nvjpeg pil; do
  "$PY" benchmarks/features.py --device cuda --n-images "$N" --batch-size 512 --image-decode "$decoder"
done
