#!/usr/bin/env bash
# Issue 9's grid in one schedule on 2 CPU cores (the strong_cpu preset without unseg_refined), one process
# per dataset. Resumable: rerun the same commands into the same folders to continue (finished cells are
# skipped; an unfinished one goes on from its last saved epoch). Then merge into this folder.
# Started 2026-12-06 05:34 UTC at code cd6b730 (stop 33).
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
for d in camvid kvasir_seg; do
  if pgrep -f "unseg evaluate --out runs/grid_$d " >/dev/null; then  # still running (e.g. from an earlier stop)
    echo "runs/grid_$d: a process is still writing it; waiting for that one" >&2
    while pgrep -f "unseg evaluate --out runs/grid_$d " >/dev/null; do sleep 60; done &
  else
    unseg evaluate --out runs/grid_$d --preset strong_cpu --datasets $d \
      --methods clean,unseg,pattern,synper,random --no-amp --no-progress >> runs/grid_$d.log 2>&1 &
  fi
done
wait
python benchmarks/merge_results.py benchmarks/results/evaluate_protection_grid_cpu runs/grid_camvid runs/grid_kvasir_seg
rm -rf benchmarks/results/evaluate_protection_grid_cpu/{protected,predictions}  # links / sample predictions: not committed
