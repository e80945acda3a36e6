"""Writing files so that nobody ever reads half of one: a temporary name in the same folder, then a rename.

Every layer writes this way (run checkpoints, metrics CSV, job control files, generated scripts, the demo
checkpoint); it needs nothing but the standard library.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

# the names a killed writer leaves behind start so (runs.checkpoints.clean_temporaries removes them)
TEMPORARY_PREFIX = ".tmp-"


@contextlib.contextmanager
def replacing(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``, renamed over ``target`` when the block ends without error.

    On any failure (an exception, a KeyboardInterrupt) the temporary file is removed and ``target`` keeps its
    old content, or stays absent. ``suffix`` ends the temporary name for writers that insist on an extension
    (``mindspore.save_checkpoint`` wants ``.ckpt``). The folder is created when missing.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{TEMPORARY_PREFIX}{uuid.uuid4().hex}-{target.name}{suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically; returns the path."""
    with replacing(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)
