"""How visible the protection is: PSNR and SSIM between the clean and the protected image."""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

SSIM_WINDOW = 7  # scikit-image's default Gaussian-free 7x7 window


def psnr(original: np.ndarray, protected: np.ndarray) -> float | None:
    """PSNR in dB over the full intensity range of the dtype; None when the images are identical."""
    if np.array_equal(original, protected):
        return None
    data_range = float(np.iinfo(original.dtype).max)
    return float(peak_signal_noise_ratio(original, protected, data_range=data_range))


def ssim(original: np.ndarray, protected: np.ndarray) -> float | None:
    """Mean SSIM (``H x W x C`` images); None when the image is too small for a 3x3 window.

    The window shrinks to the largest odd size that fits images smaller than 7 px.
    """
    window = min(SSIM_WINDOW, original.shape[0], original.shape[1])
    window -= 1 - window % 2  # largest odd size not above the smaller side
    if window < 3:
        return None
    data_range = float(np.iinfo(original.dtype).max)
    return float(
        structural_similarity(
            original, protected, win_size=window, data_range=data_range, channel_axis=2
        )
    )


def image_quality(original: np.ndarray, protected: np.ndarray) -> dict[str, float | None]:
    """``{"psnr": dB, "ssim": mean SSIM}`` of two ``H x W x C`` integer images."""
    return {"psnr": psnr(original, protected), "ssim": ssim(original, protected)}
