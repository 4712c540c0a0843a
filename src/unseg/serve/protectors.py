"""The generators a server offers, loaded once; a :class:`~unseg.protection.Protector` per budget."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

DEFAULT_CHOICE = "default"


class ProtectorPool:
    """Generator choices of one server (``default`` and any ``.safetensors`` given at start-up).

    Each generator is loaded once by :meth:`unseg.protection.Protector.load`; a request's budget
    gets a new Protector around the same (eval-mode, shared) network, which is cheap.
    """

    def __init__(self, protectors: dict[str, Any], notes: dict[str, list[str]] | None = None) -> None:
        if not protectors:
            raise ValueError("a server needs at least one generator")
        self.protectors = protectors
        self.notes = notes or {}

    @classmethod
    def load(cls, sources: list[str], device: str = "cpu", batch_size: int = 4) -> "ProtectorPool":
        """Load ``sources`` ("default", a preset name or a checkpoint path), named by file name.

        Load-time warnings (e.g. an UNTRAINED generator) are kept as notes for the page.
        Raises what :meth:`Protector.load` raises for a bad source.
        """
        from unseg.protection import Protector

        protectors, notes = {}, {}
        for source in dict.fromkeys(sources):
            base = source if not source.endswith(".safetensors") else Path(source).name
            name, number = base, 1
            while name in protectors:  # two checkpoints of one file name in different folders
                number += 1
                name = f"{base} ({number})"
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                protectors[name] = Protector.load(source, device=device, batch_size=batch_size)
            notes[name] = [str(warning.message) for warning in caught]
        return cls(protectors, notes)

    def choices(self) -> list[dict[str, Any]]:
        """``[{"name", "trained", "notes"}]`` in start-up order (the first is the page's default)."""
        return [{"name": name, "trained": protector.trained, "notes": self.notes.get(name, [])}
                for name, protector in self.protectors.items()]

    def get(self, name: str, budget):
        """A Protector of generator ``name`` with ``budget`` (a :class:`~unseg.budget.Budget`)."""
        return self.protectors[name].with_budget(budget)
