#!/usr/bin/env bash
# edgeq's GPU checks in one run of at most 9 minutes on a lent GPU (issue 22, item 8):
#
#     bash tools/gpu_check.sh OUT_DIR
#
# On the lent H100 (no network; its image's python3 has torch, numpy, onnx, onnxruntime,
# cuda-bindings, pytest, click, tokenizers and safetensors; nvcc 13, CMake and compute-sanitizer
# are installed), from the repository root here, through the `run` tool:
#
#     run(command="bash tools/gpu_check.sh $OUT", timeout_s=570, carry=[".whl", ".trt-include"])
#
# Both carried folders are optional; git ignores them once they are named in .git/info/exclude:
#   .whl          wheels the image lacks, for Python 3.12: onnxruntime-extensions (the plugin
#                 tests compare with ONNX Runtime's custom ops):
#                   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#                     --implementation cp --platform manylinux_2_17_x86_64 -d .whl \
#                     onnxruntime-extensions==0.15.2
#   .trt-include  TensorRT's headers (cp -r /work/trt-10.3/include .trt-include): the plugin
#                 library is built too and tests/test_trt_plugins.py drives it on the GPU
# Then copy OUT_DIR/kernels-<gpu>.json and .md to bench/results/ and commit them, the GPU named.
#
# Steps, each with a time limit (build 150 s, tests 200 s, benchmark 150 s, the sanitizer what
# is left) inside the 9 minutes: a step that reaches its limit is stopped and marked so. OUT_DIR
# gets gpu-check.md (the steps' results), gpu-check.log (their commands and output) and the
# benchmark's kernels-<gpu>.json/.md:
#   1. the GPU (nvidia-smi): without one it says so and exits 2, writing nothing
#   2. the wheels in .whl into a temporary folder on PYTHONPATH (pip --no-index)
#   3. CMake: libedgeq_cpu and libedgeq_cuda for this GPU's sm, and the plugin library with headers
#   4. pytest -m gpu over the test files that hold GPU tests (compute-sanitizer's test in step 6)
#   5. tools/bench_kernels.py --quick, into OUT_DIR
#   6. compute-sanitizer's four tools over the kernels' small cases, where it is installed
# Exit 0 when every step that ran passed, 1 otherwise.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
BUDGET=540  # seconds: 9 minutes

if [ $# -ne 1 ] || [ -z "$1" ]; then
  echo "usage: bash tools/gpu_check.sh OUT_DIR" >&2
  exit 2
fi
# GPU 0's "name, compute capability, driver", as nvidia-smi answers when it finds one
gpu=$(nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader 2>/dev/null) &&
  gpu=$(echo "$gpu" | head -n 1) || gpu=
if ! echo "$gpu" | grep -Eq '^[^,]+, [0-9]+\.[0-9]+, '; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi is missing or lists none): nothing checked" >&2
  exit 2
fi
OUT=$1
mkdir -p "$OUT" || { echo "gpu_check: cannot make $OUT" >&2; exit 2; }
OUT=$(cd "$OUT" && pwd)
name=${gpu%%,*}
sm=$(echo "$gpu" | cut -d, -f2 | tr -d ' .')
start=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM  # through the EXIT trap
log=$OUT/gpu-check.log
: > "$log"
rows=""
failed=0

# step NAME LIMIT COMMAND...: runs COMMAND with LIMIT seconds (less if the budget has less left),
# logs it and adds its row to the summary
step() {
  local what=$1 limit=$2 t0 rc left
  shift 2
  left=$((BUDGET - ($(date +%s) - start) - 10))
  [ "$left" -lt "$limit" ] && limit=$left
  echo "\$ $*" >> "$log"
  if [ "$limit" -le 0 ]; then
    rows="$rows| $what | not run: the 9 minutes are spent | 0 |\n"
    failed=1
    return 1
  fi
  t0=$(date +%s)
  timeout "$limit" "$@" >> "$log" 2>&1
  rc=$?
  local secs=$(($(date +%s) - t0)) result
  case $rc in
    0) result="passed" ;;
    124) result="timed out after ${limit} s" ;;
    5) result="no tests ran (all skipped or deselected: see the log)" ;;
    *) result="failed (exit $rc)" ;;
  esac
  [ "$rc" -ne 0 ] && failed=1
  rows="$rows| $what | $result | $secs |\n"
  return "$rc"
}

if [ -d "$ROOT/.whl" ]; then
  step "wheels from .whl" 60 "$PY" -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --target "$work/site" "$ROOT"/.whl/*.whl
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}:$work/site"
build=$work/build
targets="edgeq_cpu edgeq_cuda"
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)  # the toolkit's place when not on PATH
cmake_args="-DCMAKE_BUILD_TYPE=Release -DEDGEQ_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$sm -DCMAKE_CUDA_COMPILER=$nvcc"
if [ -f "$ROOT/.trt-include/NvInfer.h" ]; then
  export EDGEQ_TRT_INCLUDE=$ROOT/.trt-include
  cmake_args="$cmake_args -DTENSORRT_INCLUDE_DIR=$EDGEQ_TRT_INCLUDE"
  targets="$targets edgeq_trt_plugins"
fi
# shellcheck disable=SC2086  # the arguments are words
step "build (sm_$sm: $targets)" 150 sh -c "cmake -S '$ROOT' -B '$build' $cmake_args && \
  cmake --build '$build' -j$(nproc) --target $targets"
export EDGEQ_CPU_LIB=$build/libedgeq_cpu.so EDGEQ_CUDA_LIB=$build/libedgeq_cuda.so
cd "$ROOT" || exit 1
gpu_tests=$(grep -l "pytest.mark.gpu" tests/test_*.py)
# shellcheck disable=SC2086
step "pytest -m gpu ($(echo $gpu_tests | tr '\n' ' '))" 200 "$PY" -m pytest -q -rs -m gpu \
  -p no:cacheprovider $gpu_tests -k "not compute_sanitizer"
step "tools/bench_kernels.py --quick" 150 "$PY" tools/bench_kernels.py --quick \
  --lib "$EDGEQ_CUDA_LIB" --out "$OUT"
if command -v compute-sanitizer >/dev/null 2>&1 || [ -x "$(dirname "$nvcc")/compute-sanitizer" ]; then
  step "compute-sanitizer (memcheck, racecheck, initcheck, synccheck)" 150 "$PY" -m pytest -q \
    -p no:cacheprovider tests/test_backend_ops_gpu.py -k compute_sanitizer
else
  rows="$rows| compute-sanitizer | not installed: not run | 0 |\n"
fi

{
  echo "# edgeq GPU check on $name (sm_$sm)"
  echo
  echo "GPU, compute capability, driver: $gpu; nvcc $("$nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p'); commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown); $(date -u +%Y-%m-%dT%H:%MZ); $(($(date +%s) - start)) s in all."
  echo
  echo "| step | result | seconds |"
  echo "|---|---|---|"
  printf "%b" "$rows"
  echo
  echo "pytest's summaries, in step order: $(grep -E '^[0-9]+ (passed|failed|skipped|deselected|error)|^no tests ran' "$log" | paste -sd ';' -)"
  echo
  echo "The commands and their output: gpu-check.log; the kernel benchmark: kernels-*.md."
} > "$OUT/gpu-check.md"
cat "$OUT/gpu-check.md"
exit "$failed"
