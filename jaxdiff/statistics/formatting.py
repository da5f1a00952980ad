"""Statistics as text: the one format of a share, a difference in points and an interval, for every report."""

from typing import Sequence


def percent(x: float | None) -> str:
    """A share as '47.2%' ('-' when unknown)."""
    return "-" if x is None else f"{100 * x:.1f}%"


def points(x: float | None) -> str:
    """A difference of shares in signed points, '+1.2' ('-' when unknown)."""
    if x is None:
        return "-"
    return "+0.0" if abs(100 * x) < 0.05 else f"{100 * x:+.1f}"  # never "-0.0": a sign that says nothing


def interval_text(interval: Sequence[float | None] | None, scale: float = 100, fmt: str = "{:+.1f}",
                  missing: str = "n/a") -> str:
    """An interval as '[+1.2, +3.4]': each end times `scale` in `fmt` (signed points by default), or `missing`."""
    if interval is None or interval[0] is None:
        return missing
    return "[" + ", ".join(fmt.format(scale * end) for end in interval) + "]"


def share_with_interval(share: float, interval: Sequence[float]) -> str:
    """A share and its interval, '48.4% [43.5, 53.3]'."""
    return f"{percent(share)} {interval_text(interval, fmt='{:.1f}')}"


def tau_text(tau: float | None, scale: float = 1, fmt: str = "{:.3f}") -> str:
    """tau as a number, or '-' where one member leaves it unknown."""
    return "-" if tau is None else fmt.format(scale * tau)
