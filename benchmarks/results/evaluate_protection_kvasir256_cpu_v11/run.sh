#!/usr/bin/env bash
# Kvasir-SEG at 256 px, UNet, clean and the shipped v11 generator (stop 40, 2026-12-07 01:43–02:45 UTC, code
# 4e92310; two processes on 1 torch thread each, the protected one started 10 minutes first).
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
C="--preset strong_cpu --datasets kvasir_seg --victims unet --image-height 256 --no-amp --no-progress --data-root ../shared/data"
unseg evaluate --out runs/k256_unseg --methods unseg $C &
unseg evaluate --out runs/k256_clean --methods clean $C &
wait
unseg evaluate --out runs/k256_pattern --methods pattern $C  # stop 44, 2026-12-07 11:18–12:08 UTC, code bc8e058
# DeepLabV3+ (stop 44, 2026-12-07 12:08–13:03 UTC, code 69e6174, the two at a time)
unseg evaluate --out runs/k256dl_unseg --methods unseg ${C/--victims unet/--victims deeplabv3plus} &
unseg evaluate --out runs/k256dl_clean --methods clean ${C/--victims unet/--victims deeplabv3plus} &
wait
# FPN (stop 44, 2026-12-07 13:06–13:51 UTC, code 9fc2eaa, the two at a time)
unseg evaluate --out runs/k256fpn_unseg --methods unseg ${C/--victims unet/--victims fpn} &
unseg evaluate --out runs/k256fpn_clean --methods clean ${C/--victims unet/--victims fpn} &
wait
# `pattern` for DeepLabV3+ and FPN (stop 45, 2026-12-07 14:08–14:52 UTC, code ba8c522, the two at a time)
unseg evaluate --out runs/k256dl_pattern --methods pattern ${C/--victims unet/--victims deeplabv3plus} &
unseg evaluate --out runs/k256fpn_pattern --methods pattern ${C/--victims unet/--victims fpn} &
wait
# the interactive sam victim, clean and v11 (stop 45, 2026-12-07 14:53–15:04 UTC, code 432e9d7, the two at a time)
unseg evaluate --out runs/k256sam_unseg --methods unseg ${C/--victims unet/--victims sam} &
unseg evaluate --out runs/k256sam_clean --methods clean ${C/--victims unet/--victims sam} &
wait
# UNet synper and random (stop 45, 2026-12-07 15:04–16:00 UTC, code cb9b788, the two at a time)
unseg evaluate --out runs/k256_synper --methods synper $C &
unseg evaluate --out runs/k256_random --methods random $C &
wait
# sam@small_256 (the interactive victim with a 256-px input), clean and v11 (stop 45, 15:59–16:16 UTC, code 80e82b0)
unseg evaluate --out runs/k256s256_clean --methods clean ${C/--victims unet/--victims sam@small_256} &
unseg evaluate --out runs/k256s256_unseg --methods unseg ${C/--victims unet/--victims sam@small_256} &
wait
# DeepLabV3+ / FPN synper and random, sam@small_256 pattern / synper / random (stop 46, 2026-12-07 16:51–19:03 UTC, code
# 58d6337; two queues, run at the same time: the first three semantic cells, then the sam cells and DeepLabV3+ random)
for job in "deeplabv3plus synper" "fpn synper" "fpn random"; do set -- $job
  unseg evaluate --out runs/k256${1/deeplabv3plus/dl}_$2 --methods $2 ${C/--victims unet/--victims $1}; done &
for m in pattern synper random; do unseg evaluate --out runs/k256s256_$m --methods $m ${C/--victims unet/--victims sam@small_256}; done
unseg evaluate --out runs/k256dl_random --methods random ${C/--victims unet/--victims deeplabv3plus}
wait
# sam@small_256 with a second seed, clean and v11 (stop 46, 18:44–19:04 UTC, one after the other) -> seed1/
for m in unseg clean; do unseg evaluate --out runs/k256s256_${m}_seed1 --methods $m ${C/--victims unet/--victims sam@small_256} --seed 1; done
python benchmarks/merge_results.py benchmarks/results/evaluate_protection_kvasir256_cpu_v11/seed1 runs/k256s256_clean_seed1 runs/k256s256_unseg_seed1
python benchmarks/merge_results.py benchmarks/results/evaluate_protection_kvasir256_cpu_v11 runs/k256_clean runs/k256_unseg runs/k256_pattern \
  runs/k256dl_clean runs/k256dl_unseg runs/k256fpn_clean runs/k256fpn_unseg \
  runs/k256dl_pattern runs/k256fpn_pattern runs/k256sam_clean runs/k256sam_unseg \
  runs/k256_synper runs/k256_random runs/k256s256_clean runs/k256s256_unseg runs/k256dl_synper runs/k256fpn_synper \
  runs/k256fpn_random runs/k256dl_random runs/k256s256_pattern runs/k256s256_synper runs/k256s256_random
rm -rf benchmarks/results/evaluate_protection_kvasir256_cpu_v11/{,seed1/}{protected,predictions}  # not committed
# epochs16/: sam@small_256 clean, v11 and pattern with --epochs 16 (stop 47, 2026-12-07 20:18–20:55 UTC, code ebd229f, on the
# AMD EPYC, two processes at a time beside the CamVid 16-epoch runs of ../evaluate_protection_camvid256_cpu_v11/epochs16/)
for m in unseg clean pattern; do
  unseg evaluate --out runs/k256s256e16_$m --methods $m ${C/--victims unet/--victims sam@small_256} --epochs 16; done
python benchmarks/merge_results.py benchmarks/results/evaluate_protection_kvasir256_cpu_v11/epochs16 runs/k256s256e16_clean \
  runs/k256s256e16_unseg runs/k256s256e16_pattern
rm -rf benchmarks/results/evaluate_protection_kvasir256_cpu_v11/epochs16/protected  # not committed
# the 128-px sam victim's pattern, synper and random (stop 47, 2026-12-07 21:40–21:56 UTC, code 7847983, the three at once),
# merged into this folder's own results
for m in pattern synper random; do unseg evaluate --out runs/k256sam_$m --methods $m ${C/--victims unet/--victims sam} & done; wait
python benchmarks/merge_results.py benchmarks/results/evaluate_protection_kvasir256_cpu_v11 benchmarks/results/evaluate_protection_kvasir256_cpu_v11 \
  runs/k256sam_pattern runs/k256sam_synper runs/k256sam_random
rm -rf benchmarks/results/evaluate_protection_kvasir256_cpu_v11/{protected,predictions}  # not committed; the image grid is kept from before
