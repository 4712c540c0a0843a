"""How visible the protection is: PSNR and SSIM between the clean and the protected image.

Both are computed a strip of rows at a time (:mod:`unseg.protection.strips`), in torch on the
protector's device (the CPU by default), so a 50 MP image needs tens of MB of temporaries, not
gigabytes, and a GPU keeps the statistics off the host. Both keep their usual full-image
definitions: PSNR from the exact integer sum of squared differences, SSIM as scikit-image's mean
SSIM (7x7 uniform window, sample covariance, K1 = 0.01, K2 = 0.03, border of 3 px left out) at full
resolution. The window sums are exact (integer cumulative sums), so every strip split gives the
same windows; each SSIM strip is read with 3 extra rows above and below, so every window it
averages lies inside it. scikit-image's running-sum filter rounds its sums, so values agree with
it to float rounding (~1e-15), not bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from unseg.protection.strips import row_strips

SSIM_WINDOW = 7  # scikit-image's default Gaussian-free 7x7 window
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _strip(array: np.ndarray, low: int, high: int, device: torch.device | str) -> torch.Tensor:
    """Rows ``low:high`` of an ``H x W x C`` integer image as a ``C x rows x W`` int64 tensor."""
    return torch.from_numpy(np.ascontiguousarray(array[low:high])).to(device).permute(2, 0, 1).to(torch.int64)


def psnr(original: np.ndarray, protected: np.ndarray, device: torch.device | str = "cpu") -> float | None:
    """PSNR in dB over the full intensity range of the dtype; None when the images are identical."""
    squared = 0
    for start, stop in row_strips(original.shape[0], original.shape[1] * original.shape[2]):
        diff = _strip(protected, start, stop, device) - _strip(original, start, stop, device)
        squared += int((diff * diff).sum())  # exact: integers
    if squared == 0:
        return None
    data_range = float(np.iinfo(original.dtype).max)
    return float(10 * np.log10((data_range**2) / (squared / original.size)))


def _window_sums(values: torch.Tensor, window: int) -> torch.Tensor:
    """``C x r x W`` integers -> sums over every ``window x window`` window lying inside,
    ``C x (r - window + 1) x (W - window + 1)``, exactly (int64 cumulative sums)."""
    total = F.pad(values.cumsum(1).cumsum(2), (1, 0, 1, 0))
    return (total[:, window:, window:] - total[:, :-window, window:] - total[:, window:, :-window]
            + total[:, :-window, :-window])


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: int, data_range: float) -> torch.Tensor:
    """scikit-image's SSIM at every window centre lying ``window // 2`` inside the borders:
    ``C x r x W`` integer images -> ``C x (r - window + 1) x (W - window + 1)`` float64."""
    count = window * window
    mean = {name: _window_sums(values, window).double() / count
            for name, values in (("x", x), ("y", y), ("xx", x * x), ("yy", y * y), ("xy", x * y))}
    cov_norm = count / (count - 1)  # sample covariance, as scikit-image's default
    vx = cov_norm * (mean["xx"] - mean["x"] * mean["x"])
    vy = cov_norm * (mean["yy"] - mean["y"] * mean["y"])
    vxy = cov_norm * (mean["xy"] - mean["x"] * mean["y"])
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    numerator = (2 * mean["x"] * mean["y"] + c1) * (2 * vxy + c2)
    return numerator / ((mean["x"] ** 2 + mean["y"] ** 2 + c1) * (vx + vy + c2))


def ssim(original: np.ndarray, protected: np.ndarray, strip_pixels: int | None = None,
         device: torch.device | str = "cpu") -> float | None:
    """Mean SSIM (``H x W x C`` images); None when the image is too small for a 3x3 window.

    The window shrinks to the largest odd size that fits images smaller than 7 px. The value does
    not depend on ``strip_pixels`` (default ``STRIP_PIXELS``) or the device beyond float rounding.
    """
    height, width, channels = original.shape
    window = min(SSIM_WINDOW, height, width)
    window -= 1 - window % 2  # largest odd size not above the smaller side
    if window < 3:
        return None
    pad = (window - 1) // 2
    data_range = float(np.iinfo(original.dtype).max)
    sums = torch.zeros(channels, dtype=torch.float64, device=device)
    for start, stop in row_strips(height, width * channels, strip_pixels, min_rows=window):
        low, high = max(0, start - pad), min(height, stop + pad)
        low = min(low, max(0, high - window))  # a short last strip still gets a whole window
        first, last = max(start, pad), min(stop, height - pad)  # rows whose window is inside
        if last <= first:
            continue
        local = ssim_map(_strip(original, low, high, device), _strip(protected, low, high, device), window, data_range)
        sums += local[:, first - pad - low : last - pad - low].sum(dim=(1, 2))
    count = (height - 2 * pad) * (width - 2 * pad)
    return float((sums / count).mean())


def image_quality(original: np.ndarray, protected: np.ndarray,
                  device: torch.device | str = "cpu") -> dict[str, float | None]:
    """``{"psnr": dB, "ssim": mean SSIM}`` of two ``H x W x C`` integer images (computed on ``device``)."""
    return {"psnr": psnr(original, protected, device), "ssim": ssim(original, protected, device=device)}
