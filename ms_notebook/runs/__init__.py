"""Runs: live training curves, a background runner, device selection, run-folder checkpoints, and jobs
launched under msrun (``launch``; the worker side in ``worker.py``, their shared folder in ``jobdir.py``).

Modules here import MindSpore (lazily where they can) but never widgets.
"""
