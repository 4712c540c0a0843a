#!/bin/bash
# usage: runs/refined_variant.sh NAME OUT 'FIELDS (python dict)' [THREADS]
# registers an extra unseg_refined method with these RefineSchedule fields and runs the Kvasir sam victim on it.
. .venv/bin/activate
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${4:-1} MKL_NUM_THREADS=${4:-1}
python -c "
import sys
from unseg.evaluation import methods
methods.REFINED['$1'] = $3
from unseg.cli.main import app
sys.argv = ['unseg', 'evaluate', '--out', '$2', '--victims', 'sam', '--methods', '$1',
            '--datasets', 'kvasir_seg', '--preset', 'strong_cpu', '--epochs', '20', '--no-amp', '--no-progress']
app()
"
