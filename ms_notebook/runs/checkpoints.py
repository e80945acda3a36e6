"""Run-folder checkpoints while fine-tuning: ``last.ckpt`` every epoch and ``best.ckpt`` by an eval metric.

Each file is written atomically: saved under a temporary name in the same folder, then ``os.replace``d over
the old one, so a crash mid-write leaves the previous checkpoint intact. ``save_checkpoint`` writes mode 0o400
files; replacing a read-only file by rename only needs the folder to be writable (``check_writable`` says so
before a run starts, not after its first epoch). Weights that are no longer finite (a NaN loss) are never
saved: the previous ``last.ckpt`` and ``best.ckpt`` stay.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from mindspore.train import Callback

from ms_notebook.atomic import TEMPORARY_PREFIX, replacing


def save_atomic(net: Any, path: str | Path, append: dict[str, Any] | None = None,
                protect: tuple[str | Path, ...] = ()) -> Path:
    """Save ``net`` to ``path`` atomically, with ``append`` values stored in the checkpoint.

    ``protect`` lists files that must never be overwritten (the source checkpoint of a fine-tune).
    """
    import mindspore

    path = Path(path).resolve()
    for other in protect:
        if Path(other).resolve() == path:
            raise ValueError(f"refusing to overwrite the source checkpoint {path}")
    with replacing(path, suffix="" if path.suffix == ".ckpt" else ".ckpt") as tmp:
        mindspore.save_checkpoint(net, str(tmp), append_dict=dict(append or {}))
    return path


RUNS_ENV = "MS_NOTEBOOK_RUNS"  # the folder run folders go into (default: ./runs, beside the notebook)
_GIVEN: set[Path] = set()  # folders handed out in this process (not created until a run starts)


def default_run_dir(label: str = "run") -> Path:
    """A new run folder for a widget-driven run: ``runs/<YYYYmmdd-HHMMSS>-<label>`` under the working
    directory, which in Jupyter is the notebook's folder (``$MS_NOTEBOOK_RUNS`` instead of ``runs`` when
    set). Not created here: ``check_writable`` creates it before the first epoch."""
    import os
    import re
    import time

    base = Path(os.environ.get(RUNS_ENV) or "runs")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower()[:40] or "run"
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"
    path, n = (base / stem).absolute(), 1
    while path.exists() or path in _GIVEN:
        n += 1
        path = (base / f"{stem}-{n}").absolute()
    _GIVEN.add(path)
    return path


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove a file can be written there; OSError naming it otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".tmp-write-test-"):
            pass
    except OSError as exc:
        raise OSError(exc.errno, f"run_dir {folder} is not writable ({exc.strerror or exc})") from exc
    return folder


def all_finite(net: Any) -> bool:
    """Whether every floating-point parameter of ``net`` is finite (no NaN, no Inf)."""
    import numpy as np

    for param in net.get_parameters():
        value = param.asnumpy()
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            return False
    return True


def clean_temporaries(folder: str | Path) -> int:
    """Remove temporary files a killed process left in a run folder; returns how many."""
    count = 0
    for leftover in Path(folder).glob(f"{TEMPORARY_PREFIX}*"):
        leftover.unlink(missing_ok=True)
        count += 1
    return count


class RunCheckpoints(Callback):
    """Write ``last.ckpt`` at each epoch end and ``best.ckpt`` when ``metric`` improves, into ``folder``.

    The epoch, step and metric values are appended to each checkpoint. ``source`` is never overwritten.
    """

    def __init__(self, folder: str | Path, metric: str = "accuracy", mode: str = "max",
                 source: str | Path | None = None) -> None:
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.folder = Path(folder)
        self.metric = metric
        self.mode = mode
        self.protect = (source,) if source is not None else ()
        self.best: float | None = None
        self.saved: list[Path] = []
        self.refused: list[str] = []  # why an epoch's checkpoints were not written (non-finite weights)
        self.best_blocked = False  # set by the Runner when a loss in this run was not finite
        self.folder.mkdir(parents=True, exist_ok=True)
        clean_temporaries(self.folder)

    @property
    def last_path(self) -> Path:
        return self.folder / "last.ckpt"

    @property
    def best_path(self) -> Path:
        return self.folder / "best.ckpt"

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_train_epoch_end(self, run_context: Any) -> None:
        cb_params = run_context.original_args()
        results = cb_params.get("eval_results") or cb_params.get("metrics") or {}
        append: dict[str, Any] = {"epoch": int(cb_params.cur_epoch_num), "step": int(cb_params.cur_step_num)}
        for name, value in results.items():
            try:
                append[name] = float(value)
            except (TypeError, ValueError):
                continue
        net = cb_params.train_network if cb_params.get("network") is None else cb_params.network
        self.save(net, append)

    def save(self, net: Any, append: dict[str, Any]) -> None:
        """``last.ckpt`` now, ``best.ckpt`` too when ``append[metric]`` improved; never non-finite weights."""
        if not all_finite(net):
            self.refused.append(f"epoch {append.get('epoch')}: weights not finite; last and best kept")
            return
        self.saved.append(save_atomic(net, self.last_path, append, self.protect))
        value = append.get(self.metric)
        if self.best_blocked:
            self.refused.append(f"epoch {append.get('epoch')}: a loss was not finite; best not replaced")
            return
        if value is not None and math.isfinite(value) and self._better(value):
            self.best = value
            self.saved.append(save_atomic(net, self.best_path, append, self.protect))
