"""The documentation's own machinery (docs/_ext, docs/check_links.py), without building the site: .ci/run builds it
with warnings as errors and checks its links."""
import inspect
import json
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
sys.path[:0] = [str(DOCS), str(DOCS / "_ext")]

import check_links  # noqa: E402
import experiment_pages  # noqa: E402
from plain_math import plain_math  # noqa: E402

import fastdyn  # noqa: E402
from fastdyn.experiments import REGISTRY  # noqa: E402


def test_check_links_finds_missing_files_and_anchors(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text(
        '<a href="sub/page.html#here">ok</a> <a href="sub/page.html#gone">anchor</a> <img src="missing.png">'
        '<a href="https://example.org/x.html">external</a> <a href="#top">self</a><p id="top"></p>')
    (tmp_path / "sub" / "page.html").write_text('<h1 id="here">page</h1><a href="../index.html">up</a>')
    broken = check_links.broken_links(tmp_path)
    assert broken == ["index.html: sub/page.html#gone (no such anchor)", "index.html: missing.png (no such file)"]
    assert check_links.main(["check_links", str(tmp_path)]) == 1


def test_every_experiment_gets_a_page_from_its_committed_results(tmp_path):
    experiment_pages.write_pages(tmp_path)
    pages = {path.stem for path in (tmp_path / "experiments").glob("*.md")}
    assert set(REGISTRY) <= pages and "index" in pages
    assert (tmp_path / "overview.md").exists()
    summary = json.loads((experiment_pages.RESULTS / "kinks" / "results.json").read_text())["summary"]
    page = (tmp_path / "experiments" / "kinks.md").read_text()
    assert "fastdyn run kinks --out results/kinks" in page
    assert f"| `stripe_D_attractors` | {summary['stripe_D_attractors']} |" in page
    assert (tmp_path / "experiments" / "kinks" / "attractors.png").exists()


def test_an_experiment_without_results_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(experiment_pages, "RESULTS", tmp_path)
    page = experiment_pages.experiment_page("kinks", None)
    assert "No results are committed for this experiment yet" in page


def test_links_into_results_become_pages_and_other_files_code():
    text = experiment_pages.rewrite("[a](../SEED002.md#x) [b](results.json) ![f](kinks.png) [c](../min-norm/README.md)",
                                    experiment_pages.RESULTS / "kinks")
    assert text == "[a](SEED002.md#x) b (`results/kinks/results.json`) ![f](kinks/kinks.png) [c](min-norm.md)"


def test_plain_math_escapes_formulas_outside_literals_and_sets_formula_lines_off():
    lines = ["Norm |x| of x_+ and ``|y|`` with [64, *widths, 10]:", "    z = |x|^2", "Then :func:`f_`.",
             "Code::", "", "    a_ = |b|", "* item", "  more", "After."]
    assert plain_math(lines) == [
        r"Norm \|x\| of x\_+ and ``|y|`` with [64, \*widths, 10]:", "", r"    | z = \|x\|^2", "", "Then :func:`f_`.",
        "Code::", "", "    a_ = |b|", "", "* item", "  more", "", "After."]


def test_sections_and_heading_levels_skip_code_blocks():
    text = "# T\n\n## 2. Two: x + y\n\n```bash\n# a comment\n```\n\n### sub\n\n## Three\n"
    assert experiment_pages.section(text, "2-two-x--y") == "## 2. Two: x + y\n\n```bash\n# a comment\n```\n\n### sub\n"
    assert experiment_pages.relevel(text, 2) == \
        "## T\n\n### 2. Two: x + y\n\n```bash\n# a comment\n```\n\n#### sub\n\n### Three"


def test_every_public_module_has_an_api_page():
    modules = {name for name in fastdyn.__all__ if inspect.ismodule(getattr(fastdyn, name))} | {"sweep", "experiments"}
    pages = {path.stem for path in (DOCS / "api").glob("*.rst")}
    index = (DOCS / "api" / "index.rst").read_text().split()
    assert modules | {"fastdyn"} <= pages and all(name in index for name in modules | {"fastdyn"})
