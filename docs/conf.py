"""Sphinx configuration of the crossfed manual: Markdown pages (MyST) with the furo theme.

Built strictly in CI, so a broken link or a page outside every table of contents fails the build:
``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
"""

project = "crossfed"
author = "crossfed contributors"
copyright = "crossfed contributors"

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
myst_heading_anchors = 3

html_theme = "furo"
html_title = "crossfed"

# docs/results/ holds the raw outputs of the measurements next to the pages that quote them.
# The Markdown outputs (sweep reports, benchmark tables) are data, not pages: the results pages
# offer them as downloads; json and csv files are never read as sources.
exclude_patterns = [
    "_build",
    "results/acceptance-*.md",
    "results/foldin.md",
    "results/item_promotion.md",
    "results/item_promotion_secagg.md",
    "results/item_promotion_secagg/*.md",
    "results/soak.md",
    "results/*/report.md",
    "results/*/*/report.md",
    "results/*/*/*/report.md",
]
