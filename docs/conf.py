"""Sphinx configuration of the snnprune documentation (MyST Markdown pages, autodoc reference).

The build is offline: no intersphinx, no remote images or fonts. ``make docs`` runs it with
``-W`` so that a broken reference or a docstring that does not parse fails.
"""

import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the snnprune of this checkout, not an installed one
sys.path.insert(0, str(HERE / "_ext"))

import snnprune  # noqa: E402

# sphinx-autodoc-typehints calls a Sphinx API that Sphinx 10 removes; the notice is not ours to fix.
warnings.filterwarnings("ignore", message=".*set_application.*")

project = "snnprune"
author = "snnprune contributors"
copyright = "snnprune contributors"
release = version = snnprune.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx_autodoc_typehints",
    "snnprune_methods",
    "snnprune_recipe_keys",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]

# MyST: fenced directives with ::: and anchors for headings, so pages can link to sections.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc: members in source order, type hints in the description rather than the signature.
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
typehints_fully_qualified = False
always_document_param_types = False
# Annotations naming classes imported only for type checking cannot be resolved at build time;
# the description still shows them as written.
suppress_warnings = ["sphinx_autodoc_typehints.forward_reference", "sphinx_autodoc_typehints.guarded_import"]

html_theme = "pydata_sphinx_theme"
html_title = f"snnprune {release}"
html_static_path = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 6,
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_show_sourcelink = False
