"""The schemas of `robust report` and `robust check`: every option one field (flag, type,
default, help), read by the command line and checked in one place (see basics.schema)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from basics.schema import option


class ReportFormat(str, Enum):
    HTML = "html"
    MD = "md"
    JSON = "json"


FORMATS = tuple(f.value for f in ReportFormat)


@dataclass(frozen=True)
class ReportOptions:
    """What `robust report` writes, and of which models and perturbations."""

    out: str = option("report", "Folder for index.html, report.md, summary.json and figures/.", flag="--out",
                      path="dir")
    models: tuple[str, ...] | None = option(None, "Only these models (paths or file names, comma-separated).",
                                            kind="names", example="ivon.pt")
    perturbations: tuple[str, ...] | None = option(None, "Only these perturbations (comma-separated).",
                                                   kind="names", example="gaussian")
    formats: tuple[str, ...] = option(FORMATS, "Any of html, md, json.", flag="--format", kind="names",
                                      choices=FORMATS, text_default=",".join(FORMATS), example="html,md")


@dataclass(frozen=True)
class CheckOptions:
    """Which policy `robust check` applies, against what, and where it writes its verdicts."""

    policy: str = option("robust.toml", "TOML policy of rules.", path=True)
    baseline: str | None = option(None, "A baseline results store to compare against.", path=True)
    junit: str | None = option(None, "Write JUnit XML here.", path="file")
    markdown: str | None = option(None, "Write a Markdown job summary here.", path="file")
    init: bool = option(False, "Write a starter policy derived from the store to --policy and exit.", kind="flag")

