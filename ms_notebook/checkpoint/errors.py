"""The one error type the checkpoint index raises for malformed or unsupported files."""

from __future__ import annotations

import os


class CheckpointError(ValueError):
    """A checkpoint file is malformed, truncated, encrypted or otherwise unreadable.

    The message always names the file and what is wrong with it, so it can be shown to a user as is.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class Cancelled(Exception):
    """A long read (statistics of a big tensor) was stopped because nobody waits for its answer any more."""
