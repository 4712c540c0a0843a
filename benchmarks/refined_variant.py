"""`unseg evaluate` with one more refinement method: a name bound to a RefineSchedule's fields.

The evaluation's UnSeg variants are fixed (``unseg.evaluation.methods.VARIANTS``); this registers
another for one run, so an experiment on the refinement's views, grid or share needs no code change.
The JSON holds the schedule's fields, plus optionally ``"fit"``: how images enter the generator
(``letterbox``, the default here as in every refinement run so far, or ``square``). The run folder
records the method's identity (fit and the schedule's tag), so its cached images are never mixed
with another variant's.

Usage (from the repository root):

    python benchmarks/refined_variant.py unseg_refined_full_square '{"share": 1.0, "views": ["square"]}' \
        --out runs/x --victims sam --datasets kvasir_seg --preset strong_cpu --epochs 20 --no-amp --no-progress
"""

from __future__ import annotations

import json
import sys

from unseg.evaluation import methods


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    name, fields = argv[0], json.loads(argv[1])
    if "views" in fields:
        fields["views"] = tuple(fields["views"])
    fit = fields.pop("fit", methods.UNMARKED_FIT)  # letterbox: the fit every refinement run before fits used
    methods.VARIANTS[name] = methods.UnsegVariant(fit=fit, refine=fields)
    methods.refine_schedule(name)  # bad fields fail here, before any work
    from unseg.cli.main import app

    sys.argv = ["unseg", "evaluate", "--methods", name, *argv[2:]]
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
