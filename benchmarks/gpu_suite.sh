#!/usr/bin/env bash
# GPU check suite: one NVIDIA GPU, under 8 minutes. Exits non-zero on the first failure.
#
#   (a) sliced vs extracted parity of the full-size supernets on CUDA (fp32, TF32 off)
#   (b) full-size dynamic speed-up table on CUDA, fp32 and AMP fp16, batch 1 and 32
#   (c) one Stage I epoch with AMP + channels_last on synthetic 224x224 data (ds_resnet50)
#   (d) `dsnet-automl profile --hw cuda` on the tiny space
#   (e) the ONNX Runtime dynamic runtime with CUDAExecutionProvider (skipped, with a message,
#       when onnxruntime-gpu cannot be installed or has no CUDA provider)
#
# Needs a Python with torch (CUDA build) and this package installed: set PYTHON (default:
# python). Results go to $OUT (default: benchmarks/results/gpu/); a log per step and
# summary.txt. onnxruntime-gpu: a wheel in $ORT_GPU_WHEEL (or shared/wheels/), else the
# package registry; it is installed with --no-deps into $OUT/ortgpu (PYTHONPATH), so the CPU
# onnxruntime of the environment is left alone.
#
#   bash benchmarks/gpu_suite.sh             # on the GPU machine
#   bash benchmarks/gpu_suite.sh --dry-run   # here: the same steps on CPU at tiny sizes
set -euo pipefail

DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpu_suite: unknown argument $arg" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
CLI=("$PY" -c "import sys; from dsnet_automl.cli import main; sys.argv[0] = 'dsnet-automl'; main()")
if [[ $DRY == 1 ]]; then
  OUT=${OUT:-$(mktemp -d -t gpu_suite_dry.XXXXXX)}
else
  OUT=${OUT:-benchmarks/results/gpu}
fi
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
T_START=$(date +%s)

note() { echo "$*" | tee -a "$SUMMARY"; }

# step NAME TIMEOUT_S CMD...: run, log to $OUT/NAME.log, fail the suite on a non-zero exit
step() {
  local name=$1 limit=$2 t0 rc
  shift 2
  t0=$(date +%s)
  echo "== $name: $*"
  set +e
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  set -e
  tail -n 25 "$OUT/$name.log"
  note "$name: rc=$rc, $(( $(date +%s) - t0 )) s"
  if [[ $rc != 0 ]]; then
    note "FAILED: $name (rc=$rc; 124 = over its ${limit} s limit); log: $OUT/$name.log"
    exit 1
  fi
}

"$PY" -c "import dsnet_automl, torch" || { echo "gpu_suite: $PY lacks torch/dsnet_automl" >&2; exit 1; }

if [[ $DRY == 1 ]]; then
  note "gpu_suite DRY RUN (CPU, tiny sizes) -> $OUT"
  DEV=cpu
  PAR_ARGS=(--device cpu --nets ds_mobilenet_v1_tiny,ds_resnet50_tiny,ds_deit_small_tiny --batch 2)
  BENCH_ARGS=(--quick --nets ds_mobilenet_v1_tiny --batch-sizes 1,16 --threads 2)
  TRAIN_ARGS=(--space ds_mobilenet_v1_tiny --data synthetic:64 --batch-size 16 --device cpu)
  PROF_ARGS=(--hw host-cpu --space ds_mobilenet_v1_tiny --repeats 3 --warmup 1 --validate 2
             --batch-size 1 --threads 2)
else
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "gpu_suite: torch sees no CUDA device (use --dry-run on CPU)" >&2; exit 1; }
  note "gpu_suite on $("$PY" -c 'import torch; print(torch.cuda.get_device_name())') -> $OUT"
  DEV=cuda
  PAR_ARGS=(--device cuda --batch 8)
  BENCH_ARGS=(--repeats 5 --repeats-large 10 --overhead-repeats 50)
  TRAIN_ARGS=(--space ds_resnet50 --data synthetic:1024 --batch-size 64 --device cuda)
  PROF_ARGS=(--hw cuda --space ds_mobilenet_v1_tiny --repeats 20 --validate 4)
fi

# (a) parity
step a_parity 60 "$PY" benchmarks/gpu/parity_sliced_extracted.py "${PAR_ARGS[@]}" \
  --json "$OUT/parity.json"

# (b) dynamic speed-up, fp32 then AMP fp16 (torch modes; ORT is (e))
step b_speedup_fp32 130 "$PY" benchmarks/dynamic_speedup_full.py "${BENCH_ARGS[@]}" \
  --device "$DEV" --modes sliced,extracted --json "$OUT/dynamic_speedup_full_${DEV}_fp32.json"
if [[ $DRY == 0 ]]; then
  step b_speedup_amp 130 "$PY" benchmarks/dynamic_speedup_full.py "${BENCH_ARGS[@]}" \
    --device cuda --amp --modes sliced,extracted \
    --json "$OUT/dynamic_speedup_full_cuda_amp.json"
else
  note "b_speedup_amp: skipped in the dry run (--amp needs CUDA)"
fi

# (c) one Stage I epoch (AMP + channels_last are on by default on CUDA: TrainConfig.amp)
step c_stage1_epoch 80 "${CLI[@]}" train-supernet --out "$OUT/stage1" \
  "${TRAIN_ARGS[@]}" --epochs 1 --no-progress
"$PY" - "$OUT/stage1" "$DEV" <<'EOF' | tee -a "$SUMMARY"
import sys, yaml
from pathlib import Path
cfg = yaml.safe_load((Path(sys.argv[1]) / "config.yaml").read_text())
amp = cfg.get("amp")
print(f"c_stage1_epoch: device={cfg.get('device')} amp={amp} (channels_last follows amp on cuda)")
if sys.argv[2] == "cuda" and amp is False:
    sys.exit("c_stage1_epoch: AMP was off")
EOF

# (d) latency profile of the tiny space on this device
step d_profile 50 "${CLI[@]}" profile "${PROF_ARGS[@]}" \
  --db "sqlite:///$OUT/latency.db"

# (e) ONNX Runtime dynamic runtime on CUDA
if [[ $DRY == 1 ]]; then
  step e_ort 90 "$PY" benchmarks/dynamic_speedup_full.py --quick --nets ds_mobilenet_v1_tiny \
    --batch-sizes 1,16 --threads 2 --modes ort --json "$OUT/dynamic_speedup_full_cpu_ort.json"
else
  ORT_DIR="$OUT/ortgpu"
  WHEEL=${ORT_GPU_WHEEL:-$(ls shared/wheels/onnxruntime_gpu-*.whl 2>/dev/null | head -n 1 || true)}
  if timeout 120 "$PY" -m pip install -q --no-deps --target "$ORT_DIR" \
      --timeout 20 --retries 0 "${WHEEL:-onnxruntime-gpu}" > "$OUT/e_pip.log" 2>&1 \
    && PYTHONPATH="$ORT_DIR${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c "
import onnxruntime as ort, sys
getattr(ort, 'preload_dlls', lambda: None)()
sys.exit(0 if 'CUDAExecutionProvider' in ort.get_available_providers() else 1)"; then
    export PYTHONPATH="$ORT_DIR${PYTHONPATH:+:$PYTHONPATH}"
    step e_ort 90 "$PY" \
      benchmarks/dynamic_speedup_full.py --nets ds_mobilenet_v1,ds_resnet50 --device cuda \
      --modes ort --repeats 5 --repeats-large 10 --json "$OUT/dynamic_speedup_full_cuda_ort.json"
    "$PY" - "$OUT/dynamic_speedup_full_cuda_ort.json" <<'EOF' | tee -a "$SUMMARY"
import json, sys
r = json.load(open(sys.argv[1]))
for n, v in r["nets"].items():
    prov = v["ort_providers"] or []
    print(f"e_ort: {n} providers {prov}")
    if "CUDAExecutionProvider" not in prov:
        sys.exit(f"e_ort: {n} did not run on CUDAExecutionProvider")
EOF
  else
    note "e_ort: SKIPPED: onnxruntime-gpu not installable here or no CUDAExecutionProvider" \
      "(see $OUT/e_pip.log)"
  fi
fi

note "gpu_suite: all steps passed in $(( $(date +%s) - T_START )) s"
