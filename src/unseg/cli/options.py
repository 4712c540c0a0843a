"""Option parsing shared by several commands (no heavy imports: ``--help`` stays instant)."""

from __future__ import annotations

import typer

BAD_INPUT = 2


def fail(message: str) -> typer.Exit:
    """Print ``message`` on stderr and return the exit for bad input (code 2)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(BAD_INPUT)


def split_list(text: str | None) -> list[str]:
    """``"1, 3,car"`` -> ``["1", "3", "car"]``; None -> []."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def parse_ignore_index(text: str | None) -> list[int]:
    try:
        return [int(value) for value in split_list(text)]
    except ValueError:
        raise fail(f"--ignore-index takes integers like 255 or 11,255, got {text!r}") from None


def check_budget(epsilon: float, epsilon_bg: float) -> None:
    """Exit with code 2 unless 0 <= ε_bg <= ε <= 255 (both in 1/255 units)."""
    if not 0 <= epsilon_bg <= epsilon <= 255:
        raise fail(f"need 0 <= --epsilon-bg ({epsilon_bg}) <= --epsilon ({epsilon}) <= 255 (units of 1/255)")
