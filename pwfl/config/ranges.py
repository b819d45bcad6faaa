"""The range a numeric config key accepts, declared beside its field.

Usage::

    lr: float = ranged(0.02, gt=0)     # a field of a config section
    Range(low=0, low_open=True).rule(integer=False)   # "must be a finite number > 0"
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# Field metadata key under which a numeric field declares its Range.
RANGE = "pwfl.range"


@dataclass(frozen=True)
class Range:
    """The values one numeric config key accepts.

    NaN is never accepted. Infinity is accepted only where ``inf`` says what it
    means for the key, and only as ``+inf``.
    """

    low: float | None = None
    """Lower bound (None: none)."""
    high: float | None = None
    """Upper bound (None: none)."""
    low_open: bool = False
    """The lower bound itself is refused (``> low`` rather than ``>= low``)."""
    high_open: bool = False
    """The upper bound itself is refused (``< high`` rather than ``<= high``)."""
    inf: str = ""
    """What ``inf`` means for this key; empty: infinity is refused."""

    def admits(self, value: float) -> bool:
        """Whether a number (already of the field's type) lies in this range."""
        if isinstance(value, float):
            if math.isnan(value):
                return False
            if math.isinf(value):
                return value > 0 and bool(self.inf) and self.high is None
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def rule(self, integer: bool) -> str:
        """The range in words, as error messages give it: ``must be a finite number > 0``."""
        kind = "an integer" if integer else "a number" if self.inf else "a finite number"
        low, high = _number_text(self.low), _number_text(self.high)
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            bounds = f" in {left}{low}, {high}{right}"
        elif self.low is not None:
            bounds = f" {'>' if self.low_open else '>='} {low}"
        elif self.high is not None:
            bounds = f" {'<' if self.high_open else '<='} {high}"
        else:
            bounds = ""
        extra = f" or inf ({self.inf})" if self.inf else ""
        return f"must be {kind}{bounds}{extra}"


def _number_text(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def ranged(
    default: float,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    inf: str = "",
) -> Any:
    """A numeric dataclass field with its default and its accepted range.

    ``gt``/``ge`` give the lower bound (exclusive/inclusive), ``lt``/``le`` the
    upper one; ``inf`` says what an infinite value means where one is allowed.
    """
    rng = Range(
        low=gt if gt is not None else ge,
        high=lt if lt is not None else le,
        low_open=gt is not None,
        high_open=lt is not None,
        inf=inf,
    )
    return field(default=default, metadata={RANGE: rng})
