"""The protection budget as one value: ε on the protected region, ε_bg elsewhere, in levels per 255.

Every part of unseg that bounds noise (``unseg protect`` / ``verify`` / ``serve`` / ``evaluate``,
:class:`unseg.protection.Protector`, training, the baselines) takes a :class:`Budget`, so no
function has to guess whether "8", "8/255" or 0.0314 was meant. Pure Python: the CLI imports it
for its defaults without loading numpy or torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

LEVELS = 255  # the unit: 1/255 of the full intensity range (one level of an 8-bit image)


@dataclass(frozen=True)
class Budget:
    """Per-pixel L∞ budget in 1/255 units of the full intensity range.

    Attributes:
        epsilon: bound on the protected object(s): ``|change| <= epsilon / 255`` of the range.
        epsilon_bg: bound elsewhere (the background); at most ``epsilon``.

    On an image whose largest value is ``max_value`` the bound is ``round(max_value * ε / 255)``
    integer levels (:meth:`levels`): 8 is 8 levels of an 8-bit image and 2056 of a 16-bit one.
    """

    epsilon: float = 8.0
    epsilon_bg: float = 2.0

    def __post_init__(self) -> None:
        for name in ("epsilon", "epsilon_bg"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a number of levels per 255, got {value!r}")
            if not 0 <= value <= LEVELS:
                raise ValueError(f"{name} must be in [0, {LEVELS}] levels per 255, got {value:g}")
        if self.epsilon_bg > self.epsilon:
            raise ValueError(f"epsilon_bg ({self.epsilon_bg:g}/255) must not exceed epsilon ({self.epsilon:g}/255)")

    @classmethod
    def from_fractions(cls, epsilon: float, epsilon_bg: float) -> "Budget":
        """A budget from fractions of the intensity range (8/255 -> 8 levels per 255)."""
        for name, value in (("epsilon", epsilon), ("epsilon_bg", epsilon_bg)):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} as a fraction of the intensity range must be in [0, 1], got {value}")
        return cls(round(epsilon * LEVELS, 9), round(epsilon_bg * LEVELS, 9))  # 8/255 -> 8.0, not 8.000000000000002

    @property
    def fraction(self) -> float:
        """ε as a fraction of the intensity range (for images in [0, 1])."""
        return self.epsilon / LEVELS

    @property
    def fraction_bg(self) -> float:
        """ε_bg as a fraction of the intensity range."""
        return self.epsilon_bg / LEVELS

    def levels(self, max_value: int = LEVELS) -> tuple[int, int]:
        """(ε, ε_bg) in integer levels of an image whose largest value is ``max_value`` (255 for
        8-bit, 65535 for 16-bit): ``round(max_value * ε / 255)``."""
        return int(round(max_value * self.fraction)), int(round(max_value * self.fraction_bg))

    def __str__(self) -> str:
        return f"ε {self.epsilon:g}/255, ε_bg {self.epsilon_bg:g}/255"


DEFAULT_BUDGET = Budget(8.0, 2.0)
