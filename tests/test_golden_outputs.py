"""Same pixels before and after a refactoring: protected outputs of a fixed set of generated images
compared to committed SHA-256 checksums (``tests/golden/protect_checksums.json``).

Two generators: the ``small`` preset randomly initialised from a fixed seed (always checked) and
the shipped default weights (checked only while ``default_generator.safetensors`` is the file the
checksums were made with, by its SHA-1: new weights change every output on purpose). The cases
cover RGB, grayscale, 16-bit, RGBA, odd sizes, and mask, box, points, class-index objects and no
prompt, with saturated and raw noise. One torch thread: float rounding then does not depend on
the machine's core count.

A change that is *meant* to alter the outputs regenerates the file with
``UNSEG_GOLDEN_WRITE=1 python -m pytest tests/test_golden_outputs.py`` and says why in its commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from unseg.protection import Protector
from unseg.protection.protector import DEFAULT_WEIGHTS

CHECKSUMS = Path(__file__).parent / "golden" / "protect_checksums.json"
WRITE = os.environ.get("UNSEG_GOLDEN_WRITE") == "1"
SEEDED_PRESET = ("small", 0)  # (preset, seed) of the randomly initialised generator


def _pattern(height: int, width: int, channels: int, top: int, salt: int) -> np.ndarray:
    """A deterministic image without a random number generator (integer arithmetic only): smooth
    ramps plus a scrambled texture, so the generator sees structure and every level occurs."""
    y, x, c = np.meshgrid(np.arange(height), np.arange(width), np.arange(channels), indexing="ij")
    ramp = (x * 255 // max(1, width - 1) + y * 127 // max(1, height - 1) + 60 * c) % 256
    texture = (x * 7919 + y * 104729 + c * 31 + salt * 613) * 2654435761 % 4294967291 % 64
    value = (ramp * 3 + texture * 4) % 256
    return (value * top // 255).astype(np.uint16 if top > 255 else np.uint8)


def _rectangle(height: int, width: int, top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[top:bottom, left:right] = True
    return mask


def _ellipse(height: int, width: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    y, x = np.mgrid[:height, :width]
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1


def _cases() -> dict[str, tuple[np.ndarray, dict, bool]]:
    """name -> (image, prompt keywords of ``Protector.protect``, saturate)."""
    rgb = _pattern(61, 83, 3, 255, salt=1)
    gray = _pattern(50, 37, 1, 255, salt=2)[..., 0]
    gray16 = _pattern(45, 70, 1, 65535, salt=3)
    rgba = np.dstack([_pattern(57, 49, 3, 255, salt=4), _pattern(57, 49, 1, 255, salt=5)])
    tall = _pattern(300, 17, 3, 255, salt=6)
    wide = _pattern(33, 90, 3, 255, salt=7)
    return {
        "rgb_mask": (rgb, {"mask": _ellipse(61, 83, 30, 40, 18, 25)}, True),
        "gray_box": (gray, {"box": [3.5, 6, 30, 41]}, True),
        "gray16_points": (gray16, {"points": [[35, 20], [5, 40]], "point_labels": [1, 0]}, True),
        "rgba_objects": (rgba, {"objects": [_rectangle(57, 49, 2, 3, 25, 30), _ellipse(57, 49, 40, 30, 12, 14)]},
                         True),
        "tall_boxes_points": (tall, {"box": [[1, 10, 15, 120], [2, 200, 16, 290]], "points": [[8, 150]]}, True),
        "wide_none": (wide, {}, True),
        "rgb_box_raw": (rgb, {"box": [10, 5, 70, 50]}, False),
    }


def _digest(pixels: np.ndarray, alpha: np.ndarray | None) -> str:
    """SHA-256 over dtype, shape and bytes of the protected pixels (and the kept alpha)."""
    digest = hashlib.sha256(f"{pixels.dtype.str}{pixels.shape}".encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    if alpha is not None:
        digest.update(b"alpha" + np.ascontiguousarray(alpha).tobytes())
    return digest.hexdigest()


def _weights_sha1() -> str:
    return hashlib.sha1(DEFAULT_WEIGHTS.read_bytes()).hexdigest()


def _protectors(source: str) -> dict[bool, Protector]:
    """saturate -> protector of ``source`` ("default" or the seeded preset)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the seeded preset is untrained, on purpose
        base = Protector.load(*(("default",) if source == "default" else (SEEDED_PRESET[0],)),
                              seed=SEEDED_PRESET[1])
    raw = Protector(base.generator, name=base.name, trained=base.trained, metadata=base.metadata, saturate=False)
    return {True: base, False: raw}


def _outputs(source: str) -> dict[str, str]:
    protectors = _protectors(source)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        digests = {}
        for name, (image, prompt, saturate) in _cases().items():
            result = protectors[saturate].protect(image, **prompt)
            expected = image.shape if image.ndim == 2 else (*image.shape[:2], 1 if image.shape[2] == 1 else 3)
            assert result.pixels.shape == expected, name
            digests[name] = _digest(result.pixels, result.alpha)
        return digests
    finally:
        torch.set_num_threads(threads)


def _stored() -> dict:
    return json.loads(CHECKSUMS.read_text()) if CHECKSUMS.is_file() else {}


def _write(section: str, digests: dict[str, str], **extra: str) -> None:
    data = _stored()
    data[section] = {**extra, "cases": digests}
    CHECKSUMS.parent.mkdir(parents=True, exist_ok=True)
    CHECKSUMS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _compare(expected: dict[str, str], actual: dict[str, str]) -> None:
    assert sorted(actual) == sorted(expected), "the case list changed: regenerate the checksums on purpose"
    changed = [name for name in expected if expected[name] != actual[name]]
    assert not changed, f"protected pixels changed for {changed}"


def test_seeded_preset_outputs_match_the_committed_checksums():
    actual = _outputs("preset")
    if WRITE:
        _write("seeded_preset", actual, preset=SEEDED_PRESET[0], seed=str(SEEDED_PRESET[1]))
    stored = _stored().get("seeded_preset")
    assert stored is not None, f"no checksums in {CHECKSUMS}; make them with UNSEG_GOLDEN_WRITE=1"
    _compare(stored["cases"], actual)


def test_shipped_weights_outputs_match_the_committed_checksums():
    sha1 = _weights_sha1()
    if WRITE:
        _write("shipped_weights", _outputs("default"), weights_sha1=sha1)
    stored = _stored().get("shipped_weights")
    assert stored is not None, f"no checksums in {CHECKSUMS}; make them with UNSEG_GOLDEN_WRITE=1"
    if stored["weights_sha1"] != sha1:
        pytest.skip(f"the shipped weights changed (sha1 {sha1[:12]}; checksums made with "
                    f"{stored['weights_sha1'][:12]}): regenerate them with UNSEG_GOLDEN_WRITE=1 once the new "
                    "weights are committed")
    _compare(stored["cases"], _outputs("default"))


def test_the_cases_cover_every_format_and_prompt_kind():
    cases = _cases()
    layouts = {(image.dtype.name, 1 if image.ndim == 2 else image.shape[2]) for image, _, _ in cases.values()}
    assert {("uint8", 3), ("uint8", 1), ("uint16", 1), ("uint8", 4)} <= layouts
    kinds = set().union(*(prompt for _, prompt, _ in cases.values()))
    assert {"mask", "box", "points", "objects"} <= kinds and any(not prompt for _, prompt, _ in cases.values())
    assert any(image.shape[0] % 2 and image.shape[1] % 2 for image, _, _ in cases.values())  # odd sizes
    assert {saturate for _, _, saturate in cases.values()} == {True, False}
