"""A report as plain blocks (headings, text, tables, figures), rendered to Markdown and HTML.

HTML is one self-contained file: figures are embedded as PNG data URIs and the style
sheet is inline, so it opens from disk with no network access.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from reports.formatting import md, md_cell

if TYPE_CHECKING:
    from reports.records import Records, Run
    from reports.summary import CurveSummary


class SectionInput(Protocol):
    """What a section built outside `reports.report` reads: the store's records, each
    model's label, the summary JSON it adds its part to, and a run's curve summaries."""

    rec: "Records"
    labels: dict[str, str]
    json: dict

    def run_curves(self, run: "Run") -> "dict[str, list[CurveSummary]]": ...


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Heading:
    """A sub-heading inside a section (one per perturbation)."""
    text: str


@dataclass
class Figure:
    name: str  # file stem under figures/
    caption: str


@dataclass
class Section:
    id: str
    title: str
    blocks: list = field(default_factory=list)  # str (a paragraph), Heading, Table, Figure


CSS = """body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:2em}table{border-collapse:collapse;margin:.8em 0;font-size:.85em}th,td{border:1px solid #ccc;
padding:.25em .5em;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:min(100%,900px)}figcaption{font-size:.85em;color:#555}
.verdict{background:#f5f8ff;border-left:4px solid #3b6fd8;padding:.6em 1em}.verdict h2{margin-top:0;border:0}
h3{font-size:1.1em;margin:1.6em 0 .4em}.note{color:#777;font-style:italic}
caption{caption-side:bottom;font-size:.85em;color:#555;text-align:left}"""


def to_markdown(title: str, verdict: list[str], sections: list[Section]) -> str:
    """Markdown with every piece of text escaped (`md`): names from the store are data."""
    out = [f"# {md(title)}", "", "## Verdict", "", *[f"- {md(v)}" for v in verdict], ""]
    for s in sections:
        out += [f"## {md(s.title)}", ""]
        for b in s.blocks:
            if isinstance(b, str):
                out += [md(b), ""]
            elif isinstance(b, Heading):
                out += [f"### {md(b.text)}", ""]
            elif isinstance(b, Table):
                out += ["| " + " | ".join(md_cell(h) for h in b.header) + " |", "|" + "---|" * len(b.header)]
                out += ["| " + " | ".join(md_cell(c) for c in r) + " |" for r in b.rows]
                out += (["", f"*{md(b.caption)}*"] if b.caption else []) + [""]
            elif isinstance(b, Figure):
                alt = md(b.caption).replace("[", "(").replace("]", ")")
                out += [f"![{alt}](figures/{b.name}.png)", "", f"*{md(b.caption)}*", ""]
    return "\n".join(out)


def to_html(title: str, verdict: list[str], sections: list[Section], pngs: dict[str, bytes]) -> str:
    e = html.escape
    out = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{e(title)}</title>",
           f"<style>{CSS}</style></head><body>", f"<h1>{e(title)}</h1>",
           "<section id=verdict class=verdict><h2>Verdict</h2><ul>",
           *[f"<li>{e(v)}</li>" for v in verdict], "</ul></section>"]
    for s in sections:
        out.append(f"<section id={e(s.id)}><h2>{e(s.title)}</h2>")
        for b in s.blocks:
            if isinstance(b, str):
                cls = " class=note" if b.startswith("No ") or b.startswith("Not ") else ""
                out.append(f"<p{cls}>{e(b)}</p>")
            elif isinstance(b, Heading):
                out.append(f"<h3>{e(b.text)}</h3>")
            elif isinstance(b, Table):
                out.append("<table>" + (f"<caption>{e(b.caption)}</caption>" if b.caption else ""))
                out.append("<tr>" + "".join(f"<th>{e(h)}</th>" for h in b.header) + "</tr>")
                for r in b.rows:
                    out.append("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in r) + "</tr>")
                out.append("</table>")
            elif isinstance(b, Figure):
                data = base64.b64encode(pngs[b.name]).decode()
                out.append(f"<figure><img alt=\"{e(b.caption)}\" src=\"data:image/png;base64,{data}\">"
                           f"<figcaption>{e(b.caption)}</figcaption></figure>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


def _cell(text: str) -> str:
    """Table cells: **x** (Markdown bold for the significantly better value) becomes <b>x</b>."""
    t = html.escape(text)
    if t.startswith("**") and t.endswith("**") and len(t) > 4:
        return f"<b>{t[2:-2]}</b>"
    return t
