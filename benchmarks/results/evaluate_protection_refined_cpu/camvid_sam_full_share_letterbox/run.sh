#!/bin/bash
# CamVid sam victim (16 epochs, as bench_ref_camvid) on unseg_refined_full made through the letterbox view only (the CamVid victim's own).
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${1:-1} MKL_NUM_THREADS=${1:-1}
python -c "
import sys
from unseg.evaluation import methods
methods.REFINED['unseg_refined_full_letterbox'] = {'share': 1.0, 'views': ('letterbox',)}
from unseg.cli.main import app
sys.argv = ['unseg', 'evaluate', '--out', 'runs/bench_ref_l', '--victims', 'sam', '--methods', 'unseg_refined_full_letterbox',
            '--datasets', 'camvid', '--preset', 'strong_cpu', '--epochs', '16', '--no-amp', '--no-progress']
app()
"
