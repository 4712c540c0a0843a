#!/bin/bash
# CamVid sam victim (16 epochs, as bench_ref_camvid) on unseg_refined_full made through the square view only.
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${1:-1} MKL_NUM_THREADS=${1:-1}
python -c "
import sys
from unseg.evaluation import methods
methods.REFINED['unseg_refined_full_square'] = {'share': 1.0, 'views': ('square',)}
from unseg.cli.main import app
sys.argv = ['unseg', 'evaluate', '--out', 'runs/bench_ref_k', '--victims', 'sam', '--methods', 'unseg_refined_full_square',
            '--datasets', 'camvid', '--preset', 'strong_cpu', '--epochs', '16', '--no-amp', '--no-progress']
app()
"
