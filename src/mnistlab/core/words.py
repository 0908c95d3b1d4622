"""Numbers in words, written once: every layer that says a count or a share says it the same way."""

from __future__ import annotations


def plural(n: int, noun: str) -> str:
    """A count with its noun: '1 epoch', '0 epochs', '5 more epochs' (from 'more epoch')."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def percent(x: float) -> str:
    """A fraction as a percentage with the digits a small one needs: 77%, 4.2%, 0.4%, and <0.1%
    rather than a 0% that a nonzero value is not."""
    p = 100 * x
    if p == 0 or abs(p) >= 10:
        return f"{p:.0f}%"
    if abs(p) < 0.1:
        return f"{'-' if p < 0 else ''}<0.1%"
    return f"{p:.1f}%"
