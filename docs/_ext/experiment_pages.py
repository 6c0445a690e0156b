"""Sphinx extension: the experiment gallery, written at every build from what the repository commits.

For each experiment of :data:`fastdyn.experiments.REGISTRY` (what ``fastdyn list`` lists) it writes
``experiments/<name>.md``: the one-line description and the README's row (seed, what was measured), the module
docstring (what the experiment does and the seed's claim), the command, ``results/<name>/README.md`` (or, for an
experiment without one, the sections of the results pages that its README row links to: the claims against the
measurements), the committed figures, and every number of ``results/<name>/results.json``. The summary pages
``results/*.md`` become pages beside them, and README.md the overview page, their links to results made links to
these pages. Nothing is copied by hand, so the pages and the results never disagree; an experiment without
committed results gets a page that says so.
"""
from __future__ import annotations

import html
import importlib
import inspect
import json
import re
import shutil
from pathlib import Path

from fastdyn.experiments import REGISTRY
from plain_math import plain_math

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"
OUT = "experiments"  # under the docs source directory; ignored by git
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
IMG = re.compile(r'<img\s+src="([^"]+)"[^>]*>')


def setup(app):
    app.connect("builder-inited", lambda app: write_pages(Path(app.srcdir)))
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def readme_rows() -> dict[str, list[str]]:
    """The cells (seed, results, command) of each experiment's row in the README's "Reproduced experiments"."""
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        match = re.match(r"\| `([a-z0-9-]+)` \|(.*)\|\s*$", line)
        if match and match.group(1) in REGISTRY:
            rows[match.group(1)] = [cell.strip() for cell in re.split(r"(?<!\\)\|", match.group(2))]
    return rows


def page_of(target: Path) -> str | None:
    """The generated page (relative to experiments/, without suffix) showing the repository file ``target``."""
    try:
        rel = target.resolve().relative_to(RESULTS)
    except ValueError:
        return None
    if len(rel.parts) == 1 and rel.suffix == ".md":
        return rel.stem
    if rel.parts[0] in REGISTRY and (rel.name == "README.md" or len(rel.parts) == 1):
        return rel.parts[0]
    return None


def rewrite(text: str, base: Path, prefix: str = "") -> str:
    """Markdown from ``base`` (a directory of the repository) made to work from a page in ``prefix`` (relative to
    experiments/, e.g. "experiments/" for a page at the docs root): links to results pages become links to their
    pages, figures point at the copies under experiments/, links to other files become their paths as code."""
    text = IMG.sub(lambda m: f"![]({m.group(1)})", text)
    text = re.sub(r"</?p\b[^>]*>", "", text)

    def link(match):
        bang, label, target = match.groups()
        path, _, anchor = target.partition("#")
        if re.match(r"[a-z]+://", target) or not path:
            return match.group(0)
        resolved = (base / path).resolve()
        if bang and resolved.suffix == ".png" and resolved.is_relative_to(RESULTS):
            return f"![{label}]({prefix}{resolved.relative_to(RESULTS).as_posix()})"
        page = page_of(resolved)
        if page is not None:
            return f"[{label}]({prefix}{page}.md{'#' + anchor if anchor else ''})"
        shown = resolved.relative_to(ROOT).as_posix() if resolved.is_relative_to(ROOT) else path
        return label if shown in label else f"{label} (`{shown}`)"

    return LINK.sub(link, text)


def headings(markdown: str):
    """(line index, level, title) of each heading of ``markdown``, code blocks skipped."""
    fenced = False
    for i, line in enumerate(markdown.splitlines()):
        fenced ^= line.startswith("```")
        match = None if fenced else re.match(r"(#+) (.*)", line)
        if match:
            yield i, len(match[1]), match[2]


def relevel(markdown: str, top: int) -> str:
    """``markdown`` with its headings shifted so that the highest is of level ``top``."""
    found = list(headings(markdown))
    if not found:
        return markdown
    lines, shift = markdown.splitlines(), top - min(level for _, level, _ in found)
    for i, level, title in found:
        lines[i] = "#" * (level + shift) + " " + title
    return "\n".join(lines)


def section(markdown: str, anchor: str) -> str | None:
    """The section of ``markdown`` under the heading whose GitHub-style slug (as myst-parser makes anchors) is
    ``anchor``, down to the next heading of its level or above; None when no heading has that slug."""
    lines, start, top = markdown.splitlines(), None, 0
    for i, level, title in headings(markdown):
        if start is None and re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-") == anchor:
            start, top = i, level
        elif start is not None and level <= top:
            return "\n".join(lines[start:i])
    return None if start is None else "\n".join(lines[start:])


def row_sections(cell: str) -> list[tuple[Path, str]]:
    """(file, section text) of each link of a README cell to a section of a results page (``page.md#anchor``)."""
    found = []
    for _, _, target in LINK.findall(cell):
        path, _, anchor = target.partition("#")
        source = (ROOT / path).resolve()
        if anchor and source.suffix == ".md" and source.is_relative_to(RESULTS) and source.exists():
            text = section(source.read_text(), anchor)
            if text is not None:
                found.append((source, text))
    return found


def value_text(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        if len(value) <= 16 and all(not isinstance(v, (list, dict)) for v in value):
            return "[" + ", ".join(value_text(v) for v in value) + "]"
        return f"({len(value)} values, see results.json)"
    return html.escape(str(value)).replace("|", "\\|")


def numbers_table(summary: dict) -> str:
    lines = ["| quantity | measured |", "|---|---|"]
    for key, value in summary.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, item in items:
            name = key if sub is None else f"{key}.{sub}"
            lines.append(f"| `{name}` | {value_text(item)} |")
    return "\n".join(lines)


def experiment_page(name: str, row: list[str] | None) -> str:
    """The page of experiment ``name``; ``row``: its cells in the README's table (seed, results, command)."""
    module = importlib.import_module(REGISTRY[name])
    directory = RESULTS / name
    parts = [f"# {name}", "", f"*Seed {row[0] if row else '?'}.* {module.DESCRIPTION}", ""]
    if row and LINK.sub("", row[1]).strip(" ():,"):  # more than a link to the results
        parts += [f"**Measured, in short:** {rewrite(row[1], ROOT)}", ""]
    parts += ["## What it does and what the seed claims", "", "```{eval-rst}",
              *plain_math(inspect.cleandoc(module.__doc__).splitlines()), "```", "",
              "## Command", "", "```bash", f"fastdyn run {name} --out results/{name}",
              f"fastdyn run {name} --quick --out demo/{name}   # the minutes-on-a-laptop configuration", "```", ""]
    results = directory / "results.json"
    if not results.exists():
        parts += ["## Results", "", f"No results are committed for this experiment yet (no `results/{name}/`): "
                  "run the command above to produce them.", ""]
        return "\n".join(parts)
    stored = json.loads(results.read_text())
    readme = directory / "README.md"
    readme_text = readme.read_text() if readme.exists() else ""
    included = [(readme, readme_text)] if readme_text else row_sections(row[1]) if row else []
    for source, text in included:  # the results README, else the README row's sections of other results pages
        text = relevel(rewrite(text, source.parent), 2)
        if not text.startswith("## "):
            text = "## The results\n\n" + relevel(text, 3)
        title, body = text.split("\n", 1)
        parts += [title, "", f"*From the committed `{source.relative_to(ROOT).as_posix()}`.*", "", body, ""]
    shown = "".join(text for _, text in included)
    figures = [png for png in sorted(directory.glob("*.png")) if png.name not in shown]
    if figures:
        parts += ["## Other figures" if included else "## Figures", ""]
        for png in figures:
            parts += [f"```{{figure}} {name}/{png.name}", f":alt: {png.stem}", "", f"`{png.name}`", "```", ""]
    parts += ["## Every measured number", "",
              f"The summary in the committed `results/{name}/results.json` "
              f"({'quick' if stored.get('quick') else 'full'} configuration).", "",
              numbers_table(stored.get("summary", {})), ""]
    return "\n".join(parts)


def index_page(rows: dict[str, list[str]], summaries: list[Path]) -> str:
    lines = ["# Experiment gallery", "",
             "One page per experiment of `fastdyn list`, written at each docs build from the committed results "
             "(`results/<name>/`), and the summary pages of each seed.", "",
             "| experiment | seed | what it shows |", "|---|---|---|"]
    for name in REGISTRY:
        description = importlib.import_module(REGISTRY[name]).DESCRIPTION.replace("|", "\\|")
        lines.append(f"| [{name}]({name}.md) | {rows.get(name, ['?'])[0]} | {description} |")
    lines += ["", "Summaries: " + ", ".join(f"[{p.stem}]({p.stem}.md)" for p in summaries), "",
              "```{toctree}", ":hidden:", ""] + [p.stem for p in summaries] + list(REGISTRY) + ["```", ""]
    return "\n".join(lines)


def write_pages(srcdir: Path) -> None:
    """Write experiments/ (the gallery, the figures, the summaries) and overview.md (the README) under ``srcdir``."""
    readme = re.sub(r"\A# .*", "# Overview (the README)", (ROOT / "README.md").read_text())
    (srcdir / "overview.md").write_text(rewrite(readme, ROOT, OUT + "/"))
    out = srcdir / OUT
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for png in RESULTS.rglob("*.png"):
        copy = out / png.relative_to(RESULTS)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, copy)
    rows = readme_rows()
    summaries = sorted(RESULTS.glob("*.md"))
    for summary in summaries:
        (out / summary.name).write_text(relevel(rewrite(summary.read_text(), RESULTS), 1))
    for name in REGISTRY:
        (out / f"{name}.md").write_text(experiment_page(name, rows.get(name)))
    (out / "index.md").write_text(index_page(rows, summaries))
