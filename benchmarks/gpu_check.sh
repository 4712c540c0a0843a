#!/usr/bin/env bash
# The GPU check of issue 10, prepared for a session that has a GPU: `unseg train --device cuda`
# (and `--resume`), `unseg protect --device cuda` on a folder (then `unseg verify`), the 1024-px
# folder throughput, `unseg evaluate --preset gpu`, the speed benchmarks, the CUDA tests.
#
# Before, here (CPU machine, repository root): ../shared/tools/gpu-pack camvid kvasir_seg
#   (writes the git-ignored .gpu/: the two datasets shrunk to <= 416 px, wheels, setup.sh)
# On the GPU machine (device tool `run`, carry [".gpu"]; one command may run 10 minutes):
#   bash benchmarks/gpu_check.sh env,train,protect,bench,tests    # ~4 minutes
#   bash benchmarks/gpu_check.sh evaluate                         # the gpu preset: ~8 minutes
#   bash benchmarks/gpu_check.sh gap                              # clean CamVid surrogate + adversarial generator (not timed)
#   bash benchmarks/gpu_check.sh grid                             # issue 9's grid (2 sets x unet, deeplabv3plus, fpn, sam@small_256 x
#                                                                 # clean, unseg, pattern, synper, random) on the gpu preset's
#                                                                 # schedule; stops itself after 9 min (GRID_SECONDS), rerun
#                                                                 # to continue: runs/gpu_grid stays while the machine is warm
#   (`all` runs every step in one go)
# Here, on CPU, the same steps shrunk to seconds on generated data (checks the script itself):
#   bash benchmarks/gpu_check.sh --cpu-dry-run [steps]            # or UNSEG_GPU_CHECK_DRY_RUN=1
#
# Writes to $OUT (default ./gpu_check_out): summary.txt (one line per step: ok / FAILED, seconds,
# the step's headline numbers), env.txt, the benchmark tables (generation_speed_<tag>.txt,
# training_throughput_<tag>.txt), evaluate_report.md, and results.tar.gz (every step's log, the
# training metrics and summary, the protect manifest, the evaluation's results.json). Commit
# the tables under benchmarks/results/ and the logs / reports with the session's findings.
set -uo pipefail

DRY=0
STEPS=""
for arg in "$@"; do
  case "$arg" in
    --cpu-dry-run) DRY=1 ;;
    *) STEPS="$arg" ;;
  esac
done
[[ "${UNSEG_GPU_CHECK_DRY_RUN:-0}" == "1" ]] && DRY=1
STEPS="${STEPS:-all}"
[[ "$STEPS" == "all" ]] && STEPS="env,train,protect,bench,tests,evaluate"

REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
OUT="${OUT:-$REPO/gpu_check_out}"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TQDM_DISABLE=1

if [[ "$DRY" == "1" ]]; then
  DEVICE=cpu TAG=cpu-dry-run
  PY="${PYTHON:-$(command -v python || command -v python3)}"
  DATA="$OUT/dry_run_data"  # the same path (and files) on every call, so that a rerun of `grid` continues its run
  "$PY" - "$DATA" <<'PY' || { echo "could not write the dry run's data" >&2; exit 2; }
import sys
from pathlib import Path

import numpy as np
from PIL import Image

root = Path(sys.argv[1])
rng = np.random.default_rng(0)
for name, classes, void, splits in (("camvid", 11, 11, ("train", "val", "test")), ("kvasir_seg", 2, None, ("train", "val"))):
    folder = root / name
    for sub in ("images", "masks", "splits"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    stems = [f"{name}_{i:02d}" for i in range(12)]
    for stem in stems:
        labels = np.zeros((48, 64), np.uint8)
        labels[8:30, 10:40] = 1
        if classes > 2:
            labels[20:44, 36:60] = 3
            labels[-3:] = void
        value = labels.astype(np.int64)
        image = np.stack([value * 60 % 256, 255 - value * 20, value * 90 % 256], axis=2)
        image = np.clip(image + rng.integers(0, 30, image.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / "images" / f"{stem}.jpg", quality=90)
        Image.fromarray(labels).save(folder / "masks" / f"{stem}.png")
    for index, split in enumerate(splits):
        chosen = stems[:8] if split == "train" else stems[8 + 2 * (index - 1): 10 + 2 * (index - 1)] or stems[8:]
        (folder / "splits" / f"{split}.txt").write_text("\n".join(chosen) + "\n")
PY
  TRAIN_ARGS=(--set schedule.batch_size=2 --set schedule.surrogate_steps=1 --set schedule.generator_steps=1
              --set data.val_objects=4 --set data.min_area=0.01)
  ROUNDS_FIRST=1 ROUNDS_TOTAL=2 PNG_COUNT=4 PNG_SIDE=128
  EVAL_ARGS=(--device cpu --epochs 1 --train-images 4 --test-images 2 --image-height 32 --batch-size 2)
  SPEED_ARGS=(--sizes 64 --batches 1 --repeats 1)
  THROUGHPUT_ARGS=(--steps 1 --batch-size 2 --amp none,bf16 --channels-last false)
  SURROGATE_ARGS=(--epochs 1 --train-images 4 --test-images 2)
  GAP_ARGS=(--set schedule.batch_size=2 --set schedule.rounds=2 --set data.val_objects=4
            --set data.min_area=0.01 --set schedule.eval_every=1 --set schedule.checkpoint_every=1)
  ATTACK_ARGS=(--images 4 --steps 1)
else
  DEVICE=cuda
  if [[ -f .gpu/setup.sh ]]; then
    # shellcheck disable=SC1091
    source .gpu/setup.sh || { echo "setup.sh failed" >&2; exit 2; }
  fi
  PY="${PYTHON:-python3}"
  DATA="${UNSEG_GPU_DATA:-$REPO/.gpu/data}"
  TAG="$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0).replace(" ", "_"))' 2>/dev/null || echo cuda)"
  TRAIN_ARGS=(--set output.log_every=25)
  ROUNDS_FIRST=20 ROUNDS_TOTAL=40 PNG_COUNT=64 PNG_SIDE=1024
  EVAL_ARGS=()
  SPEED_ARGS=(--sizes 256,512,1024 --batches 1,8 --repeats 3)
  THROUGHPUT_ARGS=(--steps 5)
  # the frozen surrogate: the sam victim trained on clean CamVid objects much longer than on the CPU (8 / 24 epochs
  # there: PGD raised its loss 6 / 22 %, adversarial_poison_probe.md), then 3 000 generator steps of 32 objects
  SURROGATE_ARGS=(--epochs 60 --device cuda --threads 8)
  GAP_ARGS=(--set schedule.batch_size=32 --set schedule.rounds=3000 --set runtime.amp=bf16
            --set schedule.eval_every=250 --set schedule.checkpoint_every=250 --set output.log_every=50)
  ATTACK_ARGS=()
fi

SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
echo "# gpu_check: steps $STEPS, device $DEVICE ($TAG), dry run $DRY, code $(git rev-parse --short HEAD 2>/dev/null), $(date -u +%Y-%m-%dT%H:%MZ)" >> "$SUMMARY"
FAILED=0

run_step() {  # run_step NAME COMMAND...: timed, logged, never stops the script
  local name="$1"; shift
  local start end status
  start=$(date +%s.%N)
  "$@" > "$WORK/$name.log" 2>&1
  status=$?
  end=$(date +%s.%N)
  local seconds
  seconds=$("$PY" -c "print(f'{$end - $start:.1f}')")
  if [[ $status -eq 0 ]]; then
    echo "$name ok ${seconds}s" >> "$SUMMARY"
  else
    echo "$name FAILED (exit $status) ${seconds}s: $(tail -n 3 "$WORK/$name.log" | tr '\n' ' ')" >> "$SUMMARY"
    FAILED=1
  fi
  return $status
}

wants() { [[ ",$STEPS," == *",$1,"* ]]; }

if wants env; then
  run_step env bash -c "nvidia-smi 2>/dev/null; \"$PY\" -c 'import platform, torch, unseg; \
print(\"python\", platform.python_version(), \"torch\", torch.__version__, \"cuda\", torch.version.cuda, \
\"available\", torch.cuda.is_available(), \"devices\", torch.cuda.device_count(), \"unseg\", unseg.__version__); \
print(\"gpu\", torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"none\")'"
  cp "$WORK/env.log" "$OUT/env.txt"
fi

if wants train; then
  COMMON=(--device "$DEVICE" --set runtime.amp=bf16 --set runtime.channels_last=true --set output.progress=false
          --set schedule.eval_every="$ROUNDS_FIRST" --set schedule.checkpoint_every="$ROUNDS_FIRST" "${TRAIN_ARGS[@]}")
  run_step train "$PY" -m unseg train --data "$DATA/camvid" --out "$WORK/train" --seed 0 \
    --set schedule.rounds="$ROUNDS_FIRST" "${COMMON[@]}" --check-steps 2
  # continued "on another machine": the stored checkpoint, the stored config, more rounds
  run_step train_resume "$PY" -m unseg train --resume "$WORK/train/checkpoint_last.safetensors" \
    --set schedule.rounds="$ROUNDS_TOTAL" "${COMMON[@]}"
  grep -h "trained\|check_iou" "$WORK/train.log" "$WORK/train_resume.log" | sed 's/^/  /' >> "$SUMMARY"
fi

if wants protect; then
  run_step protect "$PY" -m unseg protect "$DATA/kvasir_seg/images" "$WORK/protected" --masks "$DATA/kvasir_seg/masks" \
    --device "$DEVICE" --batch-size 16 --workers 8
  tail -n 1 "$WORK/protect.log" | sed 's/^/  /' >> "$SUMMARY"
  run_step verify "$PY" -m unseg verify "$DATA/kvasir_seg/images" "$WORK/protected" --masks "$DATA/kvasir_seg/masks"
  tail -n 1 "$WORK/verify.log" | sed 's/^/  /' >> "$SUMMARY"
  # whole-folder throughput on PNGs of PNG_SIDE px, decode and encode included (model loaded first)
  run_step protect_folder_speed "$PY" - "$DATA/kvasir_seg/images" "$WORK/png" "$DEVICE" "$PNG_COUNT" "$PNG_SIDE" <<'PY'
import sys, time, warnings
from pathlib import Path
from PIL import Image
from unseg.data.sources import plain_source
from unseg.protection import Protector, protect_dataset

source, folder, device, count, side = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
(folder / "in").mkdir(parents=True, exist_ok=True)
photos = sorted(source.iterdir())
for index in range(count):
    Image.open(photos[index % len(photos)]).convert("RGB").resize((side, side), Image.BICUBIC).save(folder / "in" / f"{index:03d}.png")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    protector = Protector.load("default", device=device, batch_size=16)
protect_dataset(plain_source(folder / "in")[:2], folder / "warm", protector, progress=False, workers=8)  # warm-up
start = time.perf_counter()
summary = protect_dataset(plain_source(folder / "in"), folder / "out", protector, progress=False, workers=8)
seconds = time.perf_counter() - start
print(f"{summary}; {count} PNGs of {side}x{side} px in {seconds:.2f} s: {count / seconds:.1f} images/s "
      f"(decode, protect, PSNR/SSIM, encode; {device})")
PY
  tail -n 1 "$WORK/protect_folder_speed.log" | sed 's/^/  /' >> "$SUMMARY"
fi

if wants bench; then
  run_step generation_speed "$PY" benchmarks/generation_speed.py --devices "$DEVICE" "${SPEED_ARGS[@]}" \
    --out "$OUT/generation_speed_$TAG.txt"
  if [[ "$DRY" == "0" ]]; then
    run_step generation_speed_vit_b "$PY" benchmarks/generation_speed.py --generator vit_b --devices "$DEVICE" \
      --sizes 1024 --batches 8 --stages generator+budget --out "$OUT/generation_speed_vit_b_$TAG.txt"
  fi
  run_step training_throughput "$PY" benchmarks/training_throughput.py --devices "$DEVICE" "${THROUGHPUT_ARGS[@]}" \
    --out "$OUT/training_throughput_$TAG.txt"
fi

if wants tests; then
  if "$PY" -c "import pytest" 2>/dev/null; then
    run_step tests "$PY" -m pytest -q -p no:cacheprovider tests/test_devices.py
  else
    echo "tests skipped: no pytest on this machine" >> "$SUMMARY"
  fi
fi

if wants evaluate; then
  METHODS=()
  if ! "$PY" -c "import sys; from unseg.baselines import BASELINES; sys.exit('pattern' not in BASELINES)" 2>/dev/null; then
    METHODS=(--methods clean,unseg,random)  # the pattern baseline is not on this branch yet
    echo "evaluate: no 'pattern' baseline here, run without it" >> "$SUMMARY"
  fi
  run_step evaluate "$PY" -m unseg evaluate --preset gpu --data-root "$DATA" --out "$WORK/evaluate" --no-progress \
    "${METHODS[@]}" "${EVAL_ARGS[@]}"
  [[ -f "$WORK/evaluate/report.md" ]] && cp "$WORK/evaluate/report.md" "$OUT/evaluate_report.md"
fi

if wants grid; then  # issue 9's grid on the gpu preset's schedule, in a folder kept between calls: rerun to continue
  GRID_DIR="${UNSEG_GRID_DIR:-$REPO/runs/gpu_grid}"
  # exit 124 = stopped at GRID_SECONDS, which is how a long grid is meant to end a call: not a failure
  run_step grid bash -c 'timeout "$0" "$@"; status=$?; [[ $status -eq 124 ]] && echo "stopped after $0 s" && status=0; exit $status' \
    "${GRID_SECONDS:-540}" "$PY" -m unseg evaluate --preset gpu --data-root "$DATA" --out "$GRID_DIR" \
    --victims unet,deeplabv3plus,fpn,sam@small_256 --methods clean,unseg,pattern,synper,random --no-progress "${EVAL_ARGS[@]}"
  "$PY" - "$GRID_DIR/results.json" >> "$SUMMARY" <<'PY'
import json, sys
from pathlib import Path
if not Path(sys.argv[1]).is_file():
    sys.exit(print("  grid: no cell done yet; rerun `gpu_check.sh grid` on the same warm machine to continue"))
data = json.load(open(sys.argv[1]))
config = data["config"]
total = len(config["datasets"]) * len(config["victims"]) * len(config["methods"]) * len(config["defences"])
done = len(data.get("cells", {}))
print(f"  grid: {done} of {total} cells done" + ("" if done == total
      else "; rerun `gpu_check.sh grid` on the same warm machine to continue (an unfinished cell resumes at its last epoch)"))
PY
  for name in report.md results.json; do cp "$GRID_DIR/$name" "$OUT/grid_$name" 2>/dev/null; done
fi

if wants gap; then  # loss.objective = adversarial (README "Train a generator"), as in adversarial_poison_probe.md
  run_step gap_surrogate "$PY" benchmarks/clean_surrogate.py --dataset camvid --data-root "$DATA" \
    --out "$WORK/camvid_sam.safetensors" "${SURROGATE_ARGS[@]}"
  tail -n 2 "$WORK/gap_surrogate.log" | head -n 1 | sed 's/^/  /' >> "$SUMMARY"
  cp "$WORK/camvid_sam.safetensors" "$OUT/gap_surrogate.safetensors" 2>/dev/null  # ~10 MB
  run_step gap_attackability "$PY" benchmarks/surrogate_attackability.py "$WORK/camvid_sam.safetensors" \
    --data-root "$DATA" --threads 8 "${ATTACK_ARGS[@]}"
  sed 's/^/  /' "$WORK/gap_attackability.log" | tail -n 2 >> "$SUMMARY"
  run_step gap "$PY" -m unseg train --data "$DATA/camvid" --out "$WORK/gap" --seed 0 --device "$DEVICE" \
    --set output.progress=false --set model.generator=fine --set loss.objective=adversarial \
    --set model.surrogate_weights="$WORK/camvid_sam.safetensors" --set schedule.surrogate_steps=0 \
    --set schedule.generator_steps=1 --set optimiser.generator_lr=1e-3 --set output.check_steps=0 \
    --set model.semantic_surrogate= --set prompts.surrogate_prompt=box --set prompts.surrogate_unprompted=0 \
    --set prompts.box_jitter=0 --set epsilon.saturate=true --set data.surrogate_rescale_min=0.75 "${GAP_ARGS[@]}"
  grep -h "trained" "$WORK/gap.log" | sed 's/^/  /' >> "$SUMMARY"
  # the generator in float16 (< 16 MiB: what comes back from the GPU machine), and its curves
  "$PY" - "$WORK/gap/generator.safetensors" "$OUT/gap_generator.safetensors" <<'PY' && cp "$WORK/gap/metrics.csv" "$OUT/gap_metrics.csv"
import sys
from safetensors import safe_open
from safetensors.torch import save_file
with safe_open(sys.argv[1], "pt") as f:
    meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
save_file({k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}, sys.argv[2], metadata=meta)
PY
fi

tar -czf "$OUT/results.tar.gz" -C "$WORK" --exclude='*.png' --exclude='*.jpg' --exclude='*.safetensors' \
  --exclude='*.npy' --exclude='data' --exclude='png' . 2>/dev/null
cat "$SUMMARY"
rm -rf "$WORK"
exit $FAILED
