#!/bin/bash
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
C="--preset strong_cpu --no-amp --no-progress"
python benchmarks/make_default_generator.py --preset keyed --out runs/v8.safetensors  # v8: a texture per key
unseg evaluate --out runs/bench_sq_j --datasets camvid --victims sam --methods unseg:runs/v8.safetensors --epochs 16 $C  # square fit (default)
