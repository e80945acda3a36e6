"""Notebook widgets: they present state and delegate to plain-Python logic (tree model, compare, diff, stats).

``TreeView`` (``tree.py``) is the reusable virtualised tree table; ``CheckpointBrowser`` and ``browse`` live
in ``browser.py``. Import the submodules directly; this package imports nothing heavy on its own.
"""
