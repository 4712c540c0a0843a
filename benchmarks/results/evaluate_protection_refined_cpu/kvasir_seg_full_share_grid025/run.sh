#!/bin/bash
# Kvasir-SEG sam, the whole-budget refinement on a 32 x 32 grid through both views (run i; ran through an equivalent inline wrapper)
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
python benchmarks/refined_variant.py unseg_refined_full_g025 '{"share": 1.0, "grid": 0.25}' --out runs/bench_ref_i --victims sam --datasets kvasir_seg --epochs 20 \
  --preset strong_cpu --no-amp --no-progress
