#!/usr/bin/env bash
# GPU check, one script for a fresh NVIDIA machine (x86 with a desktop/datacentre GPU, or a Jetson):
#
#   bash benchmarks/gpu_check.sh [--out DIR] [--budget SECONDS] [--wheels DIR] [--debs DIR] [--venv DIR]
#                                [--state DIR] [--only STEP,STEP] [--dry-run] [--force]
#
# A rerun of what failed: --only with those step names, --state DIR to keep the engines of the first run
# (pass it to both runs), the same --venv (kept on a machine that stays up).
#
# Steps, each under its own timeout and the whole run's budget (default 480 s); a failing step is recorded
# and the next one runs; a summary closes the run:
#   env            venv (--system-site-packages, so a JetPack / NGC TensorRT is seen) with the project, its
#                  test extra and the `gpu` extra from PyPI, or offline from --wheels DIR; onnxruntime-gpu
#                  replaces the CPU onnxruntime; LD_LIBRARY_PATH gets the lib folders of NVIDIA's pip wheels
#   versions       GPU, driver, CUDA, TensorRT, ONNX Runtime and its providers
#   build-engines  `medshield models build-engines` twice: the second run must say "reused" for every model
#   parity-latency benchmarks/gpu_bench.py: DS-Net Dice and MSE-Net cosine/decisions against the CPU; p50/p95
#                  for TensorRT FP16/FP32, ORT TensorRT EP, ORT CUDA EP and CPU
#   pytest-gpu     pytest -m gpu
#   e2e            benchmarks/e2e_bench.py through two real mosquitto brokers with the best GPU backend
#                  (mosquitto from PATH, else --debs DIR, else apt-get)
# Everything lands in --out (default benchmarks/results/gpu): summary.md, summary.json, parity_latency.json,
# e2e.json, log.txt — few files on purpose, so they fit what a lent machine hands back.
#
# Without a GPU it says so, runs the CPU-only self-check of the parity and latency code (into a temporary
# folder, never over committed results), and exits 2. --dry-run does the same on a GPU machine. --force runs
# every step without a GPU (to test this script: the GPU variants are then recorded as unavailable).
#
# Jetson: TensorRT and the CUDA libraries come with JetPack; PyPI has no Jetson onnxruntime-gpu, so the
# ORT variants are recorded as unavailable unless one is preinstalled or given in --wheels.
set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
OUT="$REPO/benchmarks/results/gpu"
BUDGET=480
WHEELS=""
DEBS=""
VENV=""
DRY=0
FORCE=0
ONLY=""
STATE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$(realpath -m "$2"); shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --wheels) WHEELS=$(realpath "$2"); shift 2 ;;
    --debs) DEBS=$(realpath "$2"); shift 2 ;;
    --venv) VENV=$(realpath -m "$2"); shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --force) FORCE=1; shift ;;
    --only) ONLY=",$2,"; shift 2 ;;
    --state) STATE=$(realpath -m "$2"); shift 2 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown option $1" >&2; exit 2 ;;
  esac
done
START=$(date +%s)
export PYTHONUNBUFFERED=1 PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
# The reference CT: ../shared beside the checkout, else a copy carried inside it (./shared/data/ct/lung1.npz).
if [ -z "${MEDSHIELD_SHARED:-}" ] && [ ! -f "$REPO/../shared/data/ct/lung1.npz" ] && [ -f "$REPO/shared/data/ct/lung1.npz" ]; then
  export MEDSHIELD_SHARED="$REPO/shared"
fi

gpu_present() {
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then return 0; fi
  [ -f /etc/nv_tegra_release ] && return 0  # Jetson: the integrated GPU has no nvidia-smi -L
  return 1
}

if [ "$DRY" = 1 ] || { [ "$FORCE" = 0 ] && ! gpu_present; }; then
  if [ "$DRY" = 1 ]; then why="--dry-run"; else
    why="no NVIDIA GPU found (nvidia-smi is missing or lists no GPU, and this is not a Jetson)"; fi
  echo "gpu_check: $why. Nothing was measured on a GPU and $OUT is left as it is."
  PY="$REPO/.venv/bin/python"; [ -x "$PY" ] || PY=$(command -v python3)
  DRYOUT=$(mktemp -d)
  echo "gpu_check: CPU-only self-check of the parity and latency code with $PY -> $DRYOUT"
  if timeout 900 "$PY" benchmarks/gpu_bench.py --self-check --quick --identities 3 --max-slices 6 --out "$DRYOUT"; then
    echo "gpu_check: self-check ran; results (not GPU figures) in $DRYOUT/parity_latency.json"
  else
    echo "gpu_check: the CPU-only self-check FAILED (rc $?); see the output above"
    exit 1
  fi
  exit 2
fi

if [ -z "$VENV" ]; then
  # A python3 that is itself a venv with NVIDIA's wheels (an ML image): a nested venv would not see them.
  RUNNING=$(python3 -c 'import sys, importlib.util as u; print(sys.prefix if sys.prefix != sys.base_prefix and u.find_spec("nvidia") else "")' 2>/dev/null || true)
  if [ -n "$RUNNING" ]; then
    VENV=$RUNNING
    echo "gpu_check: python3 is the venv $VENV, which holds NVIDIA's wheels; installing into it (--venv DIR to choose)"
  else
    VENV="$REPO/.venv-gpu"
  fi
fi
mkdir -p "$OUT"
LOG="$OUT/log.txt"
STEPS="$OUT/steps.tsv"
if [ -z "$ONLY" ] || [ ! -f "$STEPS" ]; then  # a rerun (--only) appends; the summary takes each step's last row
  : > "$LOG"
  printf 'step\tstatus\tseconds\tnote\n' > "$STEPS"
fi
KEEP_STATE=1
[ -n "$STATE" ] || { STATE=$(mktemp -d); KEEP_STATE=0; }
mkdir -p "$STATE"
PY="$VENV/bin/python"

remaining() { echo $(( BUDGET - ($(date +%s) - START) )); }

# step NAME TIMEOUT COMMAND...: run under min(TIMEOUT, what is left of the budget); record status and time.
step() {
  local name=$1 limit=$2 note=${NOTE:-}; shift 2
  NOTE=""
  if [ -n "$ONLY" ] && [[ "$ONLY" != *",$name,"* ]]; then
    printf '%s\tnot-selected\t0\t--only\n' "$name" >> "$STEPS"; return 0
  fi
  local left; left=$(remaining)
  if [ "$left" -lt 20 ]; then
    printf '%s\tskipped\t0\tbudget spent\n' "$name" >> "$STEPS"; echo "== $name: skipped (budget spent)"; return 0
  fi
  [ "$limit" -gt "$((left - 5))" ] && limit=$((left - 5))
  echo "== $name (timeout ${limit}s)" | tee -a "$LOG"
  local t0; t0=$(date +%s)
  # bash -c so that a step may be one of the functions below (exported) as well as a program.
  timeout --kill-after=10 "$limit" bash -c '"$@"' "$name" "$@" >> "$LOG" 2>&1
  local rc=$?
  local took=$(( $(date +%s) - t0 ))
  local status=ok
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && status="timeout"
  [ $rc -ne 0 ] && [ "$status" = ok ] && status="failed(rc=$rc)"
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$took" "$note" >> "$STEPS"
  echo "== $name: $status in ${took}s" | tee -a "$LOG"
  return 0
}

gpu_spec() {  # the gpu extra's requirements, one a line, from pyproject.toml
  "$PY" - <<'EOF'
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["gpu"]))
EOF
}

setup_env() {
  set -e
  local pip_src=()
  if [ -n "$WHEELS" ]; then
    # Wheels too large to carry whole may come split as NAME.whl.part-00, -01, ...
    for first in "$WHEELS"/*.whl.part-00; do
      [ -e "$first" ] || continue
      cat "${first%.part-00}".part-* > "${first%.part-00}"
    done
    pip_src=(--no-index --find-links "$WHEELS")
  fi
  [ -x "$PY" ] || python3 -m venv --system-site-packages "$VENV"
  "$PY" -m pip install -q "${pip_src[@]}" --upgrade pip || true
  "$PY" -m pip install -q "${pip_src[@]}" -e ".[test]"
  set +e
  local ok=1
  while read -r req; do
    [ -n "$req" ] || continue
    case "$req" in
      tensorrt*)
        if "$PY" -c "import tensorrt" 2>/dev/null; then echo "tensorrt already importable: $("$PY" -c 'import tensorrt; print(tensorrt.__version__)')"; continue; fi
        "$PY" -m pip install -q "${pip_src[@]}" "$req" || { ok=0; echo "tensorrt: not installed. PyPI serves only stub packages for TensorRT's libraries (tensorrt-cu1x-libs downloads them from NVIDIA's own index); give them with --wheels, or use a JetPack / NGC TensorRT image"; } ;;
      onnxruntime-gpu*)
        if "$PY" -m pip install -q "${pip_src[@]}" "$req"; then
          # onnxruntime and onnxruntime-gpu ship the same package folder: drop the CPU build, then restore
          # the files its removal took from the GPU build.
          local v; v=$("$PY" -c "from importlib.metadata import version; print(version('onnxruntime-gpu'))")
          "$PY" -m pip uninstall -q -y onnxruntime || true
          "$PY" -m pip install -q "${pip_src[@]}" --force-reinstall --no-deps "onnxruntime-gpu==$v" || ok=0
        else
          ok=0; echo "onnxruntime-gpu: not installed (no wheel for this platform, or no network)"
        fi ;;
      *) "$PY" -m pip install -q "${pip_src[@]}" "$req" || ok=0 ;;
    esac
  done < <(gpu_spec)
  "$PY" -m pip list 2>/dev/null | grep -iE "onnxruntime|tensorrt|nvidia|numpy|medshield" || true
  [ $ok = 1 ]
}

build_twice() {
  "$PY" -m gateway models build-engines --state-dir "$STATE" | tee "$OUT/.build1"
  "$PY" -m gateway models build-engines --state-dir "$STATE" | tee "$OUT/.build2"
  local models; models=$(grep -c "engine built" "$OUT/.build1")
  [ "$models" -ge 1 ] && [ "$(grep -c 'engine reused' "$OUT/.build2")" = "$models" ] && ! grep -q "engine built" "$OUT/.build2"
}
mosquitto_ready() {
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] && return 0
  if [ -n "$DEBS" ]; then
    for deb in "$DEBS"/*.deb; do dpkg -x "$deb" /; done
    ldconfig || true
    [ -x /usr/sbin/mosquitto ] && return 0
  fi
  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto) >/dev/null 2>&1
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]
}
pytest_gpu() {  # a run where every gpu test skipped is no pass: it proves nothing on a GPU machine
  # Collection errors elsewhere (a broken install) are reported without hiding the gpu tests that can run.
  "$PY" -m pytest -m gpu -q -p no:cacheprovider -rA --continue-on-collection-errors tests | tee "$OUT/.pytest"
  local rc=${PIPESTATUS[0]} last; last=$(grep -E '[0-9]+ (passed|failed|skipped|errors?)' "$OUT/.pytest" | tail -1)
  rm -f "$OUT/.pytest"
  echo "pytest-gpu summary: $last"
  [ "$rc" -eq 0 ] || return "$rc"
  [[ "$last" == *passed* ]] || { echo "no gpu test ran (all skipped): see the skip reasons above"; return 5; }
}
e2e() {
  mosquitto_ready || { echo "mosquitto: not on PATH, not in --debs, and apt-get could not install it"; return 3; }
  "$PY" benchmarks/e2e_bench.py --backend auto --state-seed "$STATE" --n 50 --burst 60 \
    --note "benchmarks/gpu_check.sh on $(hostname)" --out "$OUT/e2e.json"
}

export -f setup_env gpu_spec build_twice mosquitto_ready pytest_gpu e2e
export REPO OUT WHEELS DEBS VENV STATE PY
step env 300 setup_env
# CUDA / cuDNN / TensorRT libraries from pip wheels are found through LD_LIBRARY_PATH by ORT's providers.
if [ -x "$PY" ]; then
  WHEEL_LIBS=$("$PY" -c "from gateway.inference.cudart import wheel_library_dirs; print(':'.join(wheel_library_dirs()))" 2>/dev/null || true)
  [ -n "$WHEEL_LIBS" ] && export LD_LIBRARY_PATH="$WHEEL_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}" >> "$LOG"
else
  PY=$(command -v python3)
fi
export PY LD_LIBRARY_PATH

step versions 60 "$PY" benchmarks/gpu_bench.py --versions-only --out "$OUT"

NOTE="second run must reuse every engine"
step build-engines 240 build_twice
rm -f "$OUT/.build1" "$OUT/.build2"

step parity-latency 240 "$PY" benchmarks/gpu_bench.py --state-dir "$STATE" --out "$OUT"

step pytest-gpu 300 pytest_gpu

step e2e 150 e2e

"$PY" benchmarks/gpu_bench.py --summarize --out "$OUT" --steps "$STEPS" || cat "$STEPS"
[ "$KEEP_STATE" = 1 ] || rm -rf "$STATE"
echo "gpu_check: done in $(( $(date +%s) - START )) s; results in $OUT"
! grep -qv -P '\t(ok|not-selected)\t|^step\t' "$STEPS"
