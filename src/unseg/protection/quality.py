"""How visible the protection is: PSNR and SSIM between the clean and the protected image.

Both are computed a strip of rows at a time (:mod:`unseg.protection.strips`), so a 50 MP image
needs tens of MB of temporaries, not gigabytes, and both keep their usual full-image definition:
PSNR from the exact integer sum of squared differences, SSIM as scikit-image's mean SSIM (7x7
uniform window, sample covariance, border of 3 px left out) at full resolution. Each SSIM strip
is filtered with 3 extra rows above and below, so every window it averages lies inside it; only
the rounding of scipy's running-sum filter differs from one whole-image call (measured relative
differences ~1e-15; an image of at most ``STRIP_PIXELS`` values, H·W·C, is one strip and gives
scikit-image's value exactly).
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from unseg.protection.strips import row_strips

SSIM_WINDOW = 7  # scikit-image's default Gaussian-free 7x7 window


def psnr(original: np.ndarray, protected: np.ndarray) -> float | None:
    """PSNR in dB over the full intensity range of the dtype; None when the images are identical."""
    squared = 0
    for start, stop in row_strips(original.shape[0], original.shape[1] * original.shape[2]):
        diff = (protected[start:stop].astype(np.int64) - original[start:stop]).ravel()
        squared += int(np.dot(diff, diff))  # exact: integers
    if squared == 0:
        return None
    data_range = float(np.iinfo(original.dtype).max)
    return float(10 * np.log10((data_range**2) / (squared / original.size)))


def ssim(original: np.ndarray, protected: np.ndarray, strip_pixels: int | None = None) -> float | None:
    """Mean SSIM (``H x W x C`` images); None when the image is too small for a 3x3 window.

    The window shrinks to the largest odd size that fits images smaller than 7 px. The value does
    not depend on ``strip_pixels`` (default ``STRIP_PIXELS``) beyond float rounding (see the
    module docstring).
    """
    height, width, channels = original.shape
    window = min(SSIM_WINDOW, height, width)
    window -= 1 - window % 2  # largest odd size not above the smaller side
    if window < 3:
        return None
    pad = (window - 1) // 2
    data_range = float(np.iinfo(original.dtype).max)
    sums = np.zeros(channels)
    for start, stop in row_strips(height, width * channels, strip_pixels, min_rows=window):
        low, high = max(0, start - pad), min(height, stop + pad)
        low = min(low, max(0, high - window))  # a short last strip still gets a whole window
        keep = slice(max(start, pad) - low, min(stop, height - pad) - low)  # rows whose window is inside
        if keep.stop <= keep.start:
            continue
        for channel in range(channels):
            _, local = structural_similarity(original[low:high, :, channel], protected[low:high, :, channel],
                                             win_size=window, data_range=data_range, full=True)
            sums[channel] += local[keep, pad : width - pad].sum(dtype=np.float64)
    count = (height - 2 * pad) * (width - 2 * pad)
    return float(np.mean(sums / count))


def image_quality(original: np.ndarray, protected: np.ndarray) -> dict[str, float | None]:
    """``{"psnr": dB, "ssim": mean SSIM}`` of two ``H x W x C`` integer images."""
    return {"psnr": psnr(original, protected), "ssim": ssim(original, protected)}
