"""Rebuild the shipped default generator (v11) from the v7 weights and the designed noise codes.

v11 = the ``keyed_luma_checker`` preset: v7's trained trunk and noise head (commit 7e2dc50, sha1
5e9b16452d69, reproducible with the command in ``src/unseg/weights/README.md``) plus 16 noise codes
that are *designed, not trained*: ``CODE_SCALE`` x :func:`unseg.models.generator.initial_codes` of
the ``"luma_checker"`` family (key 1 — binary masks, boxes, points — a yellow/blue checker of period
1/24 of the side; keys >= 2 a flat colour each). Inside a keyed object the code sets the sign of
every pixel; the v7 head only moves pixels off the objects and of unkeyed prompts.
``--preset keyed_checker`` builds v10 (the checker in magenta/green), ``--preset keyed_flat`` v9
(key 1: white horizontal stripes), ``--preset keyed`` v8 (a texture per key).

Usage (from the repository root; the v7 file is read from git unless ``--v7`` names it)::

    python benchmarks/make_default_generator.py --out src/unseg/weights/default_generator.safetensors
    python benchmarks/make_default_generator.py --preset keyed_flat --out runs/v9.safetensors
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import tempfile
from pathlib import Path

from unseg.models.checkpoint import load_model, save_model
from unseg.models.registry import build_generator

V7_COMMIT = "7e2dc50"
V7_PATH = "src/unseg/weights/default_generator.safetensors"
V7_SHA1 = "5e9b16452d69085cae6637d139d451b213cca25a"
# generator preset -> the shipped version it builds
VERSIONS = {"keyed": "v8", "keyed_flat": "v9", "keyed_checker": "v10", "keyed_luma_checker": "v11"}


def v7_bytes(path: str | None) -> bytes:
    """The v7 checkpoint's bytes, from ``path`` or from git history; checked against its sha1."""
    data = Path(path).read_bytes() if path else subprocess.check_output(["git", "show", f"{V7_COMMIT}:{V7_PATH}"])
    digest = hashlib.sha1(data).hexdigest()
    if digest != V7_SHA1:
        raise SystemExit(f"v7 checkpoint sha1 is {digest}, expected {V7_SHA1}")
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="where to write the fp16 safetensors file")
    parser.add_argument("--v7", default=None, help="path of the v7 checkpoint (default: read from git)")
    parser.add_argument("--preset", choices=sorted(VERSIONS), default="keyed_luma_checker",
                        help="codes: keyed_luma_checker = v11 (a yellow/blue checker as key 1, flat colours beyond), "
                             "keyed_checker = v10 (the checker in magenta/green), keyed_flat = v9 (stripes as key 1), "
                             "keyed = v8 (a texture per key) [keyed_luma_checker]")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        v7_file = Path(tmp) / "v7.safetensors"
        v7_file.write_bytes(v7_bytes(args.v7))
        v7, meta = load_model(v7_file, kind="generator")
    built = build_generator(args.preset)
    result = built.load_state_dict({k: v.float() for k, v in v7.state_dict().items()}, strict=False)
    if result.unexpected_keys or set(result.missing_keys) != {"noise_codes"}:
        raise SystemExit(f"v7 does not fit the {args.preset} preset: {result}")

    meta = {k: v for k, v in meta.items() if k not in ("unseg_kind", "unseg_config")}
    meta.update(
        trained=True,
        version=VERSIONS[args.preset],
        recommended_epsilon=8 / 255,
        recommended_epsilon_bg=2 / 255,
        note=(
            f"v7 trunk and noise head (sha1 {V7_SHA1[:12]}, trained on CamVid train) + 16 designed "
            f"keyed noise codes ({built.config.code_family} family: initial_codes x CODE_SCALE, not trained); "
            f"built by benchmarks/make_default_generator.py --preset {args.preset}"
        ),
    )
    save_model(args.out, built.half(), meta)  # float16: 8 MB
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
