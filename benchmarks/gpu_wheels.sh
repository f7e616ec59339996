#!/usr/bin/env bash
# Wheels for a GPU machine that reaches no package index (gpu_check.sh --wheels DIR):
#
#   bash benchmarks/gpu_wheels.sh DIR [PYTHON_VERSION=3.12] [ORT_GPU_VERSION=1.31.1]
#
# Downloads, for CPython PYTHON_VERSION on manylinux x86_64: the project's runtime and test dependencies
# (with theirs), setuptools and wheel (to install the checkout offline), and onnxruntime-gpu without its CUDA
# wheels (for a machine whose image has CUDA 13 and cuDNN 9 already; add them otherwise). TensorRT's
# libraries are not on PyPI (its tensorrt-cu1x-libs there are stubs that download from NVIDIA's index), so
# none are fetched. Wheels over 60 MiB are split into NAME.whl.part-00, -01, ... so each piece fits a
# transfer limit; gpu_check.sh joins them. Also the mosquitto .debs, in DIR/debs.
set -euo pipefail
DIR=${1:?usage: gpu_wheels.sh DIR [PYTHON_VERSION] [ORT_GPU_VERSION]}
PYV=${2:-3.12}
ORT=${3:-1.31.1}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$DIR"
PLATFORM=(--only-binary=:all: --python-version "$PYV" --implementation cp
          --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
          --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
mapfile -t REQS < <(python3 - "$REPO/pyproject.toml" <<'EOF'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["test"]))
EOF
)
python3 -m pip download -q "${PLATFORM[@]}" -d "$DIR" "${REQS[@]}" setuptools wheel
python3 -m pip download -q "${PLATFORM[@]}" --no-deps -d "$DIR" "onnxruntime-gpu==$ORT"
python3 -m pip download -q "${PLATFORM[@]}" -d "$DIR" flatbuffers packaging "protobuf>=4.25.8"
for f in "$DIR"/*.whl; do
  if [ "$(stat -c %s "$f")" -gt $((60 * 1024 * 1024)) ]; then
    split -b 60M -d -a 2 "$f" "$f.part-" && rm "$f"
  fi
done
# mosquitto for the e2e step (gpu_check.sh --debs DIR/debs), where apt-get works here: Debian 12 builds, which
# dpkg -x unpacks on a glibc >= 2.34 system (Ubuntu 22.04 and later).
if command -v apt-get >/dev/null 2>&1; then
  mkdir -p "$DIR/debs"
  (cd "$DIR/debs" && apt-get download -q mosquitto libmosquitto1 libcjson1 libdlt2 libwrap0 >/dev/null) ||
    echo "gpu_wheels: could not download the mosquitto packages (gpu_check.sh then tries apt-get there)"
fi
du -sh "$DIR"; ls "$DIR"
