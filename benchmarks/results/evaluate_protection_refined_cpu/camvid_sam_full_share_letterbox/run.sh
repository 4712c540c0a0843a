#!/bin/bash
# CamVid sam, the whole-budget refinement through the letterbox view, the victim's own (run l; ran through an equivalent inline wrapper)
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
python benchmarks/refined_variant.py unseg_refined_full_letterbox '{"share": 1.0, "views": ["letterbox"]}' --out runs/bench_ref_l --victims sam --datasets camvid --epochs 16 \
  --preset strong_cpu --no-amp --no-progress
