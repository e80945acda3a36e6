"""Per-layer diagnostics from the weights alone: norms, stable rank and the power-law exponent ``alpha``.

Which layers: every 2-D weight and every convolution kernel (a weight of 3 or more dims) of the weights
group. A kernel ``(out, in, k1, k2, …)`` is treated as WeightWatcher treats a Conv2d: one ``out × in`` matrix
per kernel position, their eigenvalues pooled into one spectrum.

Per layer, from the eigenvalues ``λ`` of the smaller Gram matrix (``WᵀW`` or ``WWᵀ``, which share their
non-zero eigenvalues):

- ``frobenius_norm`` ‖W‖_F = √Σλ; ``spectral_norm`` σ_max = √λ_max (the largest singular value) and
  ``lambda_max`` = λ_max (what WeightWatcher calls ``spectral_norm``);
- ``stable_rank`` = Σλ / λ_max (between 1 and the smaller side: near full for a random matrix, small when a
  few directions dominate);
- ``alpha``: the exponent of a power law fitted to the tail of the λ spectrum, its cut-off ``xmin`` chosen
  by the smallest KS distance (``powerlaw_fit``, WeightWatcher's method). WeightWatcher's reading: 2 ≤ alpha
  ≤ 6 for a well-trained layer; above 6 the layer looks random (under-trained), below 2 over-fitted. These
  are marked in ``status``; they are heuristics from the literature, not guarantees.

Bounded memory: the Gram matrices are accumulated from the tensor read in chunks of rows (``out ≥ in``);
when ``out < in`` the tensor is held once as float32 and multiplied in column blocks. A layer whose smaller
side exceeds ``max_size`` (for a kernel: whose pooled Gram matrices exceed ``max_size²`` elements) is
skipped with a reason; pass a larger ``max_size`` to include it (memory grows as its square, time as its
cube). Results are cached per (file stamps, tensor, max_size).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .dtypes import numpy_dtype
from .errors import Cancelled
from .groups import WEIGHTS
from .powerlaw_fit import MIN_EVALS, fit_power_law

if TYPE_CHECKING:
    import pandas as pd

    from .index import Checkpoint

DEFAULT_MAX_SIZE = 4096  # largest smaller side analysed by default: a 4096² float64 Gram matrix is 128 MiB
HEALTHY_ALPHA = (2.0, 6.0)
_ROW_BLOCK = 1 << 20  # elements of the tensor read at a time
_COLUMNS = (
    "name", "shape", "kind", "n_evals", "frobenius_norm", "spectral_norm", "lambda_max", "stable_rank",
    "alpha", "alpha_xmin", "alpha_ks", "n_tail", "status", "note",
)  # fmt: skip
Progress = Callable[[float, str], None]


class _Rows:
    """A bounded LRU of computed rows, keyed by (file stamps, name, max_size)."""

    def __init__(self, maxsize: int = 1 << 14) -> None:
        self._items: OrderedDict[Hashable, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.maxsize = maxsize

    def get(self, key: Hashable) -> dict[str, Any] | None:
        with self._lock:
            row = self._items.get(key)
            if row is not None:
                self._items.move_to_end(key)
            return row

    def put(self, key: Hashable, row: dict[str, Any]) -> None:
        with self._lock:
            self._items[key] = row
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)


ROWS = _Rows()


def is_layer(info: Any) -> bool:
    """Whether an entry is analysed: a floating-point weight, a matrix with both sides ≥ 2 or a kernel."""
    dtype = numpy_dtype(info.dtype)
    return (
        info.group == WEIGHTS
        and info.kind == "tensor"
        and dtype is not None
        and dtype.kind in "fV"  # bfloat16 is an ml_dtypes type
        and (len(info.shape) > 2 or (len(info.shape) == 2 and min(info.shape) >= 2))
        and info.numel > 0
    )


def _rows_of(chunks: Iterator[np.ndarray], width: int, rows: int) -> Iterator[np.ndarray]:
    """Re-cut flat chunks into float64 blocks of whole rows (``rows × width``; the last may be shorter)."""
    want = rows * width
    buf: list[np.ndarray] = []
    have = 0
    for chunk in chunks:
        buf.append(chunk.astype(np.float64))
        have += chunk.size
        while have >= want:
            joined = np.concatenate(buf) if len(buf) > 1 else buf[0]
            yield joined[:want].reshape(rows, width)
            rest = joined[want:]
            buf, have = ([rest] if rest.size else []), rest.size
    if have:
        joined = np.concatenate(buf) if len(buf) > 1 else buf[0]
        yield joined.reshape(-1, width)


def gram_eigenvalues(ck: Checkpoint, name: str, cancelled: Callable[[], bool] | None = None) -> np.ndarray:
    """The pooled eigenvalues of the smaller Gram matrix of each ``out × in`` slice of ``name``."""
    shape = ck.info(name).shape
    out, inp = shape[0], shape[1]
    k = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
    width = inp * k
    if out >= inp:  # WᵀW per slice, accumulated over blocks of rows read in order
        gram = np.zeros((k, inp, inp))
        rows = max(1, _ROW_BLOCK // width)
        for block in _rows_of(ck.iter_chunks(name, rows * width), width, rows):
            if cancelled is not None and cancelled():
                raise Cancelled
            # (k, rows, in), contiguous: each slice's product runs in BLAS (a strided view would not)
            b = np.ascontiguousarray(block.reshape(-1, inp, k).transpose(2, 0, 1))
            gram += np.matmul(b.transpose(0, 2, 1), b)
    else:  # WWᵀ per slice: hold the tensor once as float32, multiply in column blocks
        held = np.empty((out, width), dtype=np.float32)
        pos = 0
        for chunk in ck.iter_chunks(name):
            if cancelled is not None and cancelled():
                raise Cancelled
            flat = held.reshape(-1)
            flat[pos : pos + chunk.size] = chunk
            pos += chunk.size
        cube = held.reshape(out, inp, k)
        gram = np.zeros((k, out, out))
        cols = max(1, _ROW_BLOCK // out)
        for s in range(k):
            for start in range(0, inp, cols):
                if cancelled is not None and cancelled():
                    raise Cancelled
                m = np.ascontiguousarray(cube[:, start : start + cols, s], dtype=np.float64)
                gram[s] += m @ m.T
    evals = (
        [np.linalg.eigvalsh(g) for g in gram] if np.isfinite(gram).all() else [np.full(len(gram[0]), np.nan)]
    )
    return np.clip(np.concatenate(evals), 0.0, None)


def layer_row(
    ck: Checkpoint, name: str, max_size: int = DEFAULT_MAX_SIZE, cancelled: Callable[[], bool] | None = None
) -> dict[str, Any]:
    """One layer's figures (see the module docstring), or its row with ``status="skipped"`` and why."""
    info = ck.info(name)
    shape = tuple(info.shape)
    kind = "conv" if len(shape) > 2 else "matrix"
    row: dict[str, Any] = dict.fromkeys(_COLUMNS, math.nan)
    row.update(name=name, shape=shape, kind=kind, n_evals=0, n_tail=0, status="ok", note="")
    small = min(shape[0], shape[1])
    k = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
    if k * small * small > max_size * max_size:
        side = f"smaller side {small}" + (f" × {k} kernel positions" if k > 1 else "")
        row.update(
            status="skipped", note=f"{side} is above max_size={max_size}; raise max_size to include it"
        )
        return row
    evals = gram_eigenvalues(ck, name, cancelled)
    row["n_evals"] = int(evals.size)
    if not np.isfinite(evals).all():
        row.update(status="not finite", note="the weight holds NaN or Inf")
        return row
    total, top = float(evals.sum()), float(evals.max())
    row.update(
        frobenius_norm=math.sqrt(total),
        spectral_norm=math.sqrt(top),
        lambda_max=top,
        stable_rank=total / top if top > 0 else math.nan,
    )
    fit = fit_power_law(evals)
    if fit is None:
        row.update(note=f"fewer than {MIN_EVALS} positive eigenvalues: no power-law fit")
        return row
    row.update(alpha=fit.alpha, alpha_xmin=fit.xmin, alpha_ks=fit.D, n_tail=fit.n_tail)
    lo, hi = HEALTHY_ALPHA
    if fit.alpha > hi:
        row.update(status="under-trained", note=f"alpha {fit.alpha:.2f} > {hi:g}: the spectrum looks random")
    elif fit.alpha < lo:
        row.update(status="over-trained", note=f"alpha {fit.alpha:.2f} < {lo:g}: very heavy-tailed")
    return row


def diagnostics(
    ck: Checkpoint,
    names: Sequence[str] | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> pd.DataFrame:
    """One row per layer of ``ck`` (every 2-D weight and conv kernel, or ``names``), in tree order.

    Columns: ``name``, ``shape``, ``kind`` (matrix/conv), ``n_evals``, ``frobenius_norm``,
    ``spectral_norm``, ``lambda_max``, ``stable_rank``, ``alpha``, ``alpha_xmin``, ``alpha_ks``, ``n_tail``,
    ``status`` (ok, under-trained, over-trained, not finite, skipped) and ``note``. ``progress(fraction,
    name)`` is called after each layer; ``cancelled()`` is polled between chunks (True stops with
    ``Cancelled``).
    """
    import pandas as pd

    if names is None:
        chosen = [info.name for info in ck.tree_order() if is_layer(info)]
    else:
        chosen = list(names)
        for name in chosen:
            if not is_layer(ck.info(name)):
                raise ValueError(f"{name!r} is not a floating-point weight of 2 or more dims")
    rows = []
    for i, name in enumerate(chosen):
        if cancelled is not None and cancelled():
            raise Cancelled
        key = (ck._entry_stamps(ck._by_name[name]), name, int(max_size))
        row = ROWS.get(key)
        if row is None:
            row = layer_row(ck, name, max_size, cancelled)
            ROWS.put(key, row)
        rows.append(row)
        if progress is not None:
            progress((i + 1) / len(chosen), name)
    return pd.DataFrame(rows, columns=list(_COLUMNS))
