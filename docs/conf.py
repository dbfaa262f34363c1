"""Sphinx configuration of detloss's documentation site.

Build it with ``scripts/build_docs.sh`` (installs the ``docs`` extra and runs
``sphinx-build -W``: a broken cross-reference or docstring fails the build).
"""
import detloss_plugin

project = 'detloss'
author = 'detloss developers'
release = version = detloss_plugin.__version__

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.autosummary',
    'sphinx.ext.napoleon',
    'sphinx.ext.mathjax',
    'sphinx.ext.viewcode',
    'myst_parser',
]
source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build']

myst_enable_extensions = ['dollarmath', 'colon_fence']
myst_heading_anchors = 3

autodoc_default_options = {'members': True, 'show-inheritance': True}
autodoc_member_order = 'bysource'
autodoc_typehints = 'description'
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# mmdet / mmcv / mmengine classes appear as bases and annotations; nitpicky mode would
# demand their intersphinx inventories, which this offline build does not fetch.
nitpicky = False
html_theme = 'furo'
html_title = f'detloss {release}'
