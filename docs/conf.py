"""Sphinx configuration of fastdyn's documentation.

Why Sphinx: the docstrings are reStructuredText (``:func:`` roles, ``::`` blocks), which autodoc renders as they are
(mkdocstrings, the mkdocs-material route, would need them rewritten in Markdown); napoleon reads their Google-style
Args / Returns / Raises sections; myst-parser lets the home page and the committed results (results/*/README.md)
stay Markdown; sphinx-gallery executes the guides at every build, so their code cannot rot; and the built-in search
(searchindex.js) works offline. Theme: furo (light, no network assets).

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (see docs/README.md).
"""
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # the guides are small; threads would only fight on 2 cores
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # the sweep guide's in-process cluster, quietly

import fastdyn  # noqa: E402

project = "fastdyn"
author = "fastdyn contributors"
release = version = fastdyn.__version__
copyright = "fastdyn contributors, MIT licence"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "plain_math",  # docs/_ext: the docstrings' plain-text formulas shown as written
    "experiment_pages",  # docs/_ext: one page per experiment from results/<name>/
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "README.md", "guides/README.rst"]
myst_heading_anchors = 3

autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False  # not torch.nn.Module's "Define the computation performed at every call"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = True

sphinx_gallery_conf = {
    "examples_dirs": ["guides"],
    "gallery_dirs": ["guides_run"],
    "filename_pattern": r"/guide_",  # execute every guide
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "write_computation_times": False,  # its page loads table scripts from a CDN; each guide shows its own time
    "abort_on_example_error": True,
}

html_theme = "furo"
html_title = f"fastdyn {release}"
html_static_path = []
html_show_sourcelink = False
