#!/usr/bin/env bash
# One lent-GPU session, prepared to run unattended in a single call on the device machine:
#   1. the inference check (bench/gpu_check.py: fp32/fp16 throughput, memory, box agreement);
#   2. the next 640 px detector (VERSION, default 1.2.0), fine-tuned on the GPU from the default
#      detector on scenes with more looks per class (--varied, core/synth/variety.py), within a
#      time budget;
#   3. positioning accuracy (bench/positioning_accuracy.py) of the new and the shipped detector,
#      on the training renderer's look and on the hold-out look (core/synth/holdout_style.py).
# Everything it prints and makes lands in $OUT (8 files at most come back from the machine).
#
#   bash bench/gpu_session.sh                                   # on the GPU machine
#   DEVICE=cpu SCENES=24 VAL=12 HOLDOUT=10 TRAIN_SECONDS=60 ACCURACY_SCENES=6 bash bench/gpu_session.sh
#
# The machine has torch but not ultralytics or pydantic: wheels for them travel in .whl/ (ignored
# by git), fetched on a machine with an index for the GPU machine's Python 3.12:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 --platform any -d .whl ultralytics==8.4.190 \
#     ultralytics-thop==2.2.3 ultralytics-platform==0.1.99 pydantic==2.14.4 pydantic_core==2.50.5 \
#     pydantic-settings==2.16.3 annotated-types==0.8.0 typing-inspection==0.4.5 python-dotenv \
#     typing_extensions==4.16.0 lark==1.3.1
# bench/gpu_shims/polars stands in for polars, whose 54 MB wheel is too big to carry: its
# read_csv raises, which ultralytics catches when it saves a checkpoint (no training history in it).
set -euo pipefail
OUT=${OUT:-/tmp/mugpos-gpu-session}
DEVICE=${DEVICE:-cuda:0}
SCENES=${SCENES:-3000}
VAL=${VAL:-150}
HOLDOUT=${HOLDOUT:-100}
TRAIN_SECONDS=${TRAIN_SECONDS:-270}
BATCH=${BATCH:-64}
WORKERS=${WORKERS:-12}
ACCURACY_SCENES=${ACCURACY_SCENES:-120}
VERSION=${VERSION:-1.2.0}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 OUT DEVICE SCENES VAL HOLDOUT TRAIN_SECONDS BATCH WORKERS VERSION
mkdir -p "$OUT"

if [ -d .whl ] && ! "$PYTHON" -c "import ultralytics, pydantic_settings" 2>/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD/bench/gpu_shims:$PWD"
fi
export PYTHONPATH="${PYTHONPATH:-$PWD}"
# Data-loading processes hand batches over in shared memory; a small /dev/shm kills them.
shm_gib=$(df --output=avail -BG /dev/shm 2>/dev/null | tail -1 | tr -dc 0-9)
if [ "${shm_gib:-0}" -lt 8 ] && [ "$(id -u)" = 0 ]; then
  mount -o remount,size=16G /dev/shm || echo "/dev/shm holds ${shm_gib:-?} GiB and stays so"
fi
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.txt"
fi

# A failed inference check must not cost the training run: both are reported separately.
if [[ $DEVICE == cuda* ]]; then
  timeout 150 "$PYTHON" bench/gpu_check.py 2>&1 | tee "$OUT/gpu_check.log" || echo "gpu_check failed"
fi

timeout $((TRAIN_SECONDS + 240)) "$PYTHON" - <<'PY' 2>&1 | tee "$OUT/train.log"
import os, shutil, time
from pathlib import Path

from core.models.manifest import DEFAULT_MODEL, bundled_dir
from core.models.training import Hardware, TrainRecipe, train

env = os.environ
started = time.perf_counter()
shipped = (bundled_dir(DEFAULT_MODEL) / "model.pt").resolve()
recipe = TrainRecipe(
    epochs=300,  # an upper bound: the time budget decides
    imgsz=640,
    seed=11,
    train_scenes=int(env["SCENES"]),
    val_scenes=int(env["VAL"]),
    holdout_scenes=int(env["HOLDOUT"]),
    batch=int(env["BATCH"]),
    version=env["VERSION"],
    init_weights=str(shipped),
    varied=True,
    time_hours=float(env["TRAIN_SECONDS"]) / 3600,
)
work = Path("/tmp/mugpos-train")
out = Path(env["OUT"]) / "model"
hardware = Hardware(env["DEVICE"], int(env["WORKERS"]))
manifest = train(recipe, work, out, print, hardware)
results = work / "runs" / "train" / "results.csv"
if results.is_file():
    shutil.copyfile(results, Path(env["OUT"]) / "results.csv")
print(f"trained {manifest.ref} in {time.perf_counter() - started:.0f} s: {manifest.metrics}")
PY

# The new model's figures on both looks go into its manifest (--record): it comes back with them.
# No --model-dir: the benchmark's default, the default detector, for comparison.
for model in "--model-dir $OUT/model --record" ""; do
  for style in generator holdout; do  # the hold-out look is never trained on
    # shellcheck disable=SC2086  # $model is zero or three words
    timeout 180 "$PYTHON" bench/positioning_accuracy.py $model --device "$DEVICE" \
      --scenes "$ACCURACY_SCENES" --style "$style" 2>&1 | tee -a "$OUT/positioning.log" \
      || echo "accuracy of ${model:-the default detector} ($style) failed"
  done
done
