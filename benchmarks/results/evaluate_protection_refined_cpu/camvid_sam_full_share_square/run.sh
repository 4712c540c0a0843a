#!/bin/bash
# CamVid sam, the whole-budget refinement through the square view (run k; ran through an equivalent inline wrapper)
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
python benchmarks/refined_variant.py unseg_refined_full_square '{"share": 1.0, "views": ["square"]}' --out runs/bench_ref_k --victims sam --datasets camvid --epochs 16 \
  --preset strong_cpu --no-amp --no-progress
