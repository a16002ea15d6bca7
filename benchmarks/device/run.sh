#!/usr/bin/env bash
# Run scopectl's GPU measurements on the device machine (the device tool's `run`, with carry=[".whl"]
# after benchmarks/device/fetch.sh).  Results are copied to $OUT (at most 8 files come back).
#
#   bash benchmarks/device/run.sh check                  # imports, GPU, the CUDA tests (~1 min)
#   bash benchmarks/device/run.sh perf                   # bench_enhance + bench_train on the GPU (~4 min)
#   bash benchmarks/device/run.sh quality lung jpeg 6 120  # quality_twin: sample, input, minutes, pairs
#
# Without .whl/ it uses the Python environment as it is (PYTHON=.venv/bin/python here, for a dry run:
# DEVICE=cpu BATCH=16 PHONE_PX=256 bash benchmarks/device/run.sh quality lung jpeg 0.2 6).
#
# Each command must finish inside the tool's 10-minute limit: quality runs render their pairs on the
# machine's 16 cores first (about 1 s per pair), then train for the given minutes, then score.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/scopectl-device-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD/.whl/py:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
marker=$(mktemp)
collect() { find benchmarks/results -newer "$marker" -type f -exec cp {} "$OUT/" \; ; }
trap collect EXIT
step="${1:-check}"
case "$step" in
check)
    "$PY" - <<'PY'
import torch, scopectl.learn.enhance, scopectl.twin, scopectl.evaluation.tables  # noqa: F401
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
PY
    "$PY" -m pytest -q -p no:cacheprovider tests/learn 2>&1 | tail -5 | tee "$OUT/check.txt"
    ;;
perf)
    "$PY" benchmarks/bench_enhance.py --repeats 20 --skip-cpu --skip-onnx
    "$PY" benchmarks/bench_train.py --steps 50 --compile --skip-cpu
    ;;
quality)
    sample="${2:?sample: lung, pap or blood}"; input="${3:-jpeg}"; minutes="${4:-6}"; pairs="${5:-120}"
    "$PY" benchmarks/quality_twin.py --sample "$sample" --input "$input" --minutes "$minutes" \
        --pairs "$pairs" --device "${DEVICE:-cuda}" --batch-size "${BATCH:-1024}" \
        --phone-px "${PHONE_PX:-1024}" --workdir /tmp/qt
    ;;
*)
    echo "unknown step '$step' (check, perf or quality)" >&2
    exit 2
    ;;
esac
