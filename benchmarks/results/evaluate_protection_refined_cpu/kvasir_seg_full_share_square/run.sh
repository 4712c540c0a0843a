#!/bin/bash
# Kvasir-SEG sam, unseg_refined_full with the square view only (module-level VIEWS patched; the identity records it).
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
python -c "
import sys
import unseg.protection.refine as refine
square = refine.VIEWS['square']; refine.VIEWS.clear(); refine.VIEWS['square'] = square
from unseg.cli.main import app
sys.argv = ['unseg', 'evaluate', '--out', 'runs/bench_ref_g', '--victims', 'sam', '--methods', 'unseg_refined_full',
            '--datasets', 'kvasir_seg', '--preset', 'strong_cpu', '--epochs', '20', '--no-amp', '--no-progress']
app()
"
