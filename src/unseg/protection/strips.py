"""Row strips: how native-size stages of protection stay in bounded memory on large images.

Everything the protector computes at an image's own resolution (the noise mapped up from the
model input, saturation, the budget, L∞, PSNR, SSIM) is done one strip of whole rows at a time,
so the float temporaries cost ``STRIP_PIXELS`` pixels, not the image's size; only the integer
input, the output and the region mask are held whole (see README, "Large images").
"""

from __future__ import annotations

from collections.abc import Iterator

STRIP_PIXELS = 1 << 19  # ~0.5 MP per strip: ~50 MB of float64 temporaries, few Python iterations


def row_strips(height: int, width: int, pixels: int | None = None, min_rows: int = 1) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` row ranges covering ``0:height``, each about ``pixels`` pixels (default
    ``STRIP_PIXELS``, read at call time), at least ``min_rows`` rows and at least one."""
    pixels = STRIP_PIXELS if pixels is None else pixels
    rows = max(1, min_rows, pixels // max(1, width))
    for start in range(0, height, rows):
        yield start, min(height, start + rows)
