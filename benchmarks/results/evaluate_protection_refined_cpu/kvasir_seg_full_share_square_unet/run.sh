#!/bin/bash
# Kvasir-SEG UNet-R18, 5 epochs, on run g's images (whole-budget refinement, square view; same identity, so the cached images are used; ran through an equivalent inline wrapper)
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
python benchmarks/refined_variant.py unseg_refined_full '{"share": 1.0, "views": ["square"]}' --out runs/bench_ref_j --victims unet --datasets kvasir_seg --epochs 5 \
  --preset strong_cpu --no-amp --no-progress
