#!/usr/bin/env bash
# The GPU check: CuPy installed, the `gpu` tests on real CuPy, then one table of a training
# step and inference timed on the GPU next to the CPU, with their results compared.
#
#   scripts/gpu_check.sh             on a CUDA machine: pip install -e '.[gpu]', then check
#   scripts/gpu_check.sh --no-install  CuPy is already installed
#   scripts/gpu_check.sh --fake      no GPU: the same steps against the fake CuPy
#                                    (MINIRCNN_FAKE_GPU=1); the timings then mean nothing
#
# Run it in the virtual environment to use (or set PYTHON). Exit status: 0 all passed,
# 1 a gpu test failed or the devices' results differ, 2 no GPU found.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-$(command -v python || command -v python3)}"

install=1
repeats=5
while [ $# -gt 0 ]; do
    case "$1" in
        --fake) export MINIRCNN_FAKE_GPU=1; install=0 ;;
        --no-install) install=0 ;;
        --repeats) repeats="$2"; shift ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check.sh: error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$install" = 1 ]; then
    echo "== pip install -e '.[gpu,dev]'"
    "$py" -m pip install -q -e '.[gpu,dev]'
fi

echo "== device"
"$py" - <<'PY' || exit 2
import sys
from minircnn.backend import gpu_available, gpu_name
if not gpu_available():
    sys.exit("gpu_check.sh: error: no GPU (CuPy missing or no CUDA device); "
             "on a machine without one, run with --fake")
print(gpu_name())
PY

echo "== pytest -m gpu"
# addopts without --nbmake: the lessons are not part of this check
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
tests_rc=0
"$py" -m pytest -q -p no:cacheprovider -o addopts="-ra --import-mode=importlib" -m gpu tests \
    | tee "$log" || tests_rc=$?
summary="$(tail -n 1 "$log")"

echo "== GPU next to CPU"
check_rc=0
"$py" -m minircnn.perf.gpu_check --repeats "$repeats" --tests "$summary" || check_rc=$?
if [ "$tests_rc" != 0 ]; then exit 1; fi
exit "$check_rc"
