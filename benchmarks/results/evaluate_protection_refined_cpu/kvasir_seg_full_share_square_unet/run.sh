#!/bin/bash
# Kvasir-SEG UNet-R18 (5 epochs, as bench_ref_e) on run g's images: unseg_refined_full through the square view only.
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
python -c "
import sys
from unseg.evaluation import methods
methods.REFINED['unseg_refined_full'] = {'share': 1.0, 'views': ('square',)}
from unseg.cli.main import app
sys.argv = ['unseg', 'evaluate', '--out', 'runs/bench_ref_j', '--victims', 'unet', '--methods', 'unseg_refined_full',
            '--datasets', 'kvasir_seg', '--preset', 'strong_cpu', '--epochs', '5', '--no-amp', '--no-progress']
app()
"
