"""Number formatting shared by the report's sections."""

from __future__ import annotations

import math


def pct(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{100 * v:.2f}"


def num(v: float | None, fmt: str = ".3f") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:{fmt}}"


def slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in s).strip("-")[:40]


def fmt_ci(v: float, hw: float | None, fmt: str = ".3g", hw_fmt: str = ".2g") -> str:
    """`v ±hw`, or `v` alone when there is no interval."""
    return num(v, fmt) + ("" if hw is None or not math.isfinite(hw) else f" ±{hw:{hw_fmt}}")


def md(text: str) -> str:
    """Text for Markdown: HTML's special characters as entities (a renderer passes raw HTML
    through, so a model named `<img onerror=...>` would run), line breaks as spaces."""
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\r", " ").replace("\n", " "))


def md_cell(text: str) -> str:
    """`md` for a table cell: a pipe would also split the row."""
    return md(text).replace("|", "\\|")
