"""Runs: live training curves, a background runner, device selection and run-folder checkpoints.

Modules here import MindSpore (lazily where they can) but never widgets.
"""
