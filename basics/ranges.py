"""Numbers as users type them: level ranges (`0.01:0.1`, `0.01:0.1:5`, `1e-3:1e-1:5log`,
`0.01,0.02,0.05`) and the bounds a single setting must keep."""

from __future__ import annotations

import math

import numpy as np

from basics.errors import BadInput

DEFAULT_POINTS = 10
MAX_LEVELS = 1000  # levels one range may expand to: each is a sweep unit, and a typo should not be a week of work
SIGNIFICANT = 12   # digits kept of a computed level (relative: 1e-15 keeps its digits, 0.1 + 2e-17 becomes 0.1)


def out_of_bounds(v: float, low: float | None = None, high: float | None = None, low_open: bool = False,
                  high_open: bool = False) -> str | None:
    """Why `v` breaks its bounds ("must be > 0"), or None when it keeps them: one wording for
    command-line flags and config files."""
    def show(b: float) -> str:  # integers in full (a seed bound of 2^63 - 1 is not 9.2e+18)
        return str(b) if isinstance(b, int) else f"{b:g}"

    if low is not None and (v < low or (low_open and v == low)):
        return f"must be {'>' if low_open else '>='} {show(low)}"
    if high is not None and (v > high or (high_open and v == high)):
        return f"must be {'<' if high_open else '<='} {show(high)}"
    return None


def _num(s: str, text: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise BadInput(f"malformed range {text!r}: {s!r} is not a number") from None
    if not math.isfinite(v):
        raise BadInput(f"malformed range {text!r}: {s!r} is not finite")
    return v


def level_axis(text: str) -> str:
    """`log` for a START:STOP:NUMlog range, else `linear`: the axis summaries integrate on.

    >>> level_axis("1:1e5:6log"), level_axis("0.01:0.1")
    ('log', 'linear')
    """
    parts = str(text).strip().split(":")
    return "log" if len(parts) == 3 and parts[2].strip().endswith("log") else "linear"


def parse_levels(text: str, *, integer: bool = False, minimum: float = 0.0, name: str = "range") -> list[float]:
    """Levels from START:STOP[:NUM[log]] or a comma list, sorted, without duplicates.

    START:STOP gives 10 linear points (integers: every integer from START to STOP).
    Raises BadInput for malformed text, STOP < START, or values below `minimum`.

    >>> parse_levels("0.01:0.1:4")
    [0.01, 0.04, 0.07, 0.1]
    >>> parse_levels("2:4", integer=True)
    [2.0, 3.0, 4.0]
    """
    text = str(text).strip()
    if not text:
        raise BadInput(f"empty {name}")
    if ":" in text:
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise BadInput(f"malformed {name} {text!r}: use START:STOP, START:STOP:NUM or START:STOP:NUMlog")
        start, stop = _num(parts[0], text), _num(parts[1], text)
        if stop < start:
            raise BadInput(f"malformed {name} {text!r}: stop {stop:g} is below start {start:g}")
        log = False
        if len(parts) == 3:
            n_text = parts[2].strip()
            if n_text.endswith("log"):
                log, n_text = True, n_text[:-3]
            if not n_text.isdigit() or int(n_text) < 1:
                raise BadInput(f"malformed {name} {text!r}: NUM must be a positive integer")
            num = int(n_text)
        else:
            num = int(stop - start) + 1 if integer else DEFAULT_POINTS
        if num > MAX_LEVELS:
            raise BadInput(f"{name} {text!r} expands to {num} levels; at most {MAX_LEVELS} per range")
        if log:
            if start <= 0:
                raise BadInput(f"malformed {name} {text!r}: a log range needs START > 0")
            vals = np.geomspace(start, stop, num)
        else:
            vals = np.linspace(start, stop, num)
        # rounded to significant digits, not decimals: a range of bit error rates near 1e-12 keeps its levels
        levels = [float(f"{v:.{SIGNIFICANT}g}") for v in vals]
        levels[0], levels[-1] = start, stop  # the end points exactly as typed
    else:
        levels = [_num(p, text) for p in text.split(",") if p.strip() != ""]
        if not levels:
            raise BadInput(f"empty {name} {text!r}")
        if len(levels) > MAX_LEVELS:
            raise BadInput(f"{name} {text!r} lists {len(levels)} levels; at most {MAX_LEVELS}")
    if integer:
        bad = [v for v in levels if v != int(v)]
        if bad:
            raise BadInput(f"{name} {text!r}: {bad[0]:g} is not an integer")
    low = [v for v in levels if v < minimum]
    if low:
        raise BadInput(f"{name} {text!r}: {low[0]:g} is below the minimum {minimum:g}")
    return sorted(set(levels))
