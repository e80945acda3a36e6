"""The demo's pretrained checkpoint: DigitsNet trained on all ten digits, built on first use and cached.

``pretrained_checkpoint()`` returns the path of a MindSpore ``.ckpt`` holding the network *and* its Momentum
optimizer state (``moments.*``, ``learning_rate``, ``momentum``, ``global_step``) plus appended values
(``epoch_num``, ``step_num``, ``task``). It trains deterministically (weights drawn from a fixed NumPy seed, a
fixed batch order, GRAPH mode) in about 20–30 s on a CPU (measured: 18–28 s on two shared cores, MindSpore's
graph compilation included), says so while it does, and is cached so that every notebook reuses it.

Cache folder: ``$MS_NOTEBOOK_CACHE`` if set, else ``$XDG_CACHE_HOME/ms-notebook``, else
``~/.cache/ms-notebook``. The file name carries a hash of the training recipe (and the MindSpore version), so
changing the recipe builds a new file instead of reusing a stale one. The file is written to a temporary name
and renamed (atomic), under a file lock so that two kernels starting at once train it only once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ms_notebook.atomic import replacing

RECIPE: dict[str, object] = {
    "recipe_version": 1,
    "network": "DigitsNet(8,16,64)",
    "task": "pretrain",
    "epochs": 6,
    "batch_size": 32,
    "learning_rate": 0.05,
    "momentum": 0.9,
    "init_seed": 0,
    "order_seed": 0,
}


def cache_dir() -> Path:
    """Folder where demo files are cached (see the module docstring for the environment variables)."""
    explicit = os.environ.get("MS_NOTEBOOK_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ms-notebook"


def recipe_hash(recipe: dict[str, object] | None = None) -> str:
    """Short hash of the training recipe and MindSpore version: the cache key."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ms_version = version("mindspore")
    except PackageNotFoundError:  # pragma: no cover - MindSpore is a dependency
        ms_version = "unknown"
    payload = json.dumps({**(recipe or RECIPE), "mindspore": ms_version}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def checkpoint_path(recipe: dict[str, object] | None = None) -> Path:
    """Where the checkpoint for ``recipe`` is (or will be) cached."""
    return cache_dir() / f"digitsnet-pretrain-{recipe_hash(recipe)}.ckpt"


DEMO_EXPRESSION = "demo.pretrained_checkpoint()"
DEMO_IMPORT = "from ms_notebook import demo  # the tutorials' pretrained checkpoint, built once and cached"


def code_expression(path: str | os.PathLike[str] | None) -> str | None:
    """``"demo.pretrained_checkpoint()"`` when ``path`` is the cached demo checkpoint, else None.

    Generated code uses it instead of the file's absolute path, so it runs for anyone (whose cache folder
    differs) and does not show this machine's home folder.
    """
    if path is None:
        return None
    try:
        return DEMO_EXPRESSION if Path(path).resolve() == checkpoint_path().resolve() else None
    except (OSError, ValueError):
        return None


BUILD_SECONDS = "20–30 s"  # measured (see the module docstring); said while the checkpoint builds


def _message_stream():
    """stdout in a notebook (stderr shows as an error box there), stderr elsewhere (stdout may be parsed)."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:  # pragma: no cover - IPython comes with the notebook dependencies
        shell = None
    return sys.stdout if shell is not None and getattr(shell, "kernel", None) is not None else sys.stderr


def pretrained_checkpoint(rebuild: bool = False, verbose: bool = True) -> str:
    """Path (a ``str``, as MindSpore's loaders expect) of the cached pretrained checkpoint; built if needed.

    ``rebuild=True`` trains again and replaces the cached file. While it trains (first use only) it says so,
    with the time it takes, unless ``verbose=False``: in a notebook on the cell's output, elsewhere on stderr.
    """
    path = checkpoint_path()
    if path.is_file() and path.stat().st_size > 0 and not rebuild:
        return str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.with_name(path.name + ".lock")):
        # Another process may have built it while we waited for the lock.
        if path.is_file() and path.stat().st_size > 0 and not rebuild:
            return str(path)
        stream = _message_stream() if verbose else None
        if stream is not None:
            print(f"Building the demo checkpoint (first use only, about {BUILD_SECONDS} on a CPU): training "
                  "DigitsNet on the ten digits…", file=stream, flush=True)
        started = time.perf_counter()
        result = train_pretrained(path, RECIPE)
        if stream is not None:
            print(f"Demo checkpoint ready in {time.perf_counter() - started:.0f} s (test accuracy "
                  f"{result['accuracy']:.1%}); cached for the next notebooks.", file=stream, flush=True)
    return str(path)


def train_pretrained(
    path: str | os.PathLike[str], recipe: dict[str, object] | None = None
) -> dict[str, float]:
    """Train DigitsNet by ``recipe`` and save network + optimizer state to ``path`` atomically.

    Returns ``{"accuracy": …, "loss": …}`` measured on the test split. Runs in GRAPH mode and restores the
    previous execution mode afterwards.
    """
    import mindspore as ms
    from mindspore import Tensor, nn

    from .data import arrays
    from .network import DigitsNet

    r = {**RECIPE, **(recipe or {})}
    epochs, batch = int(r["epochs"]), int(r["batch_size"])
    x, y = arrays(str(r["task"]), "train")  # type: ignore[arg-type]
    x_test, y_test = arrays(str(r["task"]), "test")  # type: ignore[arg-type]

    previous_mode = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        net = DigitsNet(10, seed=int(r["init_seed"]))  # type: ignore[arg-type]
        loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
        optimizer = nn.Momentum(net.trainable_params(), float(r["learning_rate"]), float(r["momentum"]))
        train_net = nn.TrainOneStepCell(nn.WithLossCell(net, loss_fn), optimizer)
        train_net.set_train(True)
        rng = np.random.default_rng(int(r["order_seed"]))  # type: ignore[arg-type]
        steps = 0
        for _ in range(epochs):
            order = rng.permutation(len(y))
            # Full batches only: one compiled graph, and every step sees the same batch size.
            for start in range(0, len(y) - batch + 1, batch):
                idx = order[start : start + batch]
                train_net(Tensor(x[idx]), Tensor(y[idx]))
                steps += 1
        net.set_train(False)
        logits = net(Tensor(x_test)).asnumpy()
    finally:
        ms.set_context(mode=previous_mode)
    accuracy = float((logits.argmax(axis=1) == y_test).mean())
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = float(-log_probs[np.arange(len(y_test)), y_test].mean())

    with replacing(path, suffix=".ckpt") as tmp:  # save_checkpoint creates the file itself (mode 0o400)
        ms.save_checkpoint(
            train_net,
            str(tmp),
            append_dict={"epoch_num": epochs, "step_num": steps, "task": str(r["task"])},
        )
    return {"accuracy": accuracy, "loss": loss}


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``lock_path`` (POSIX ``flock``; a no-op where unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: atomic rename still keeps the file whole
        yield
        return
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
