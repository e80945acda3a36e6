"""Write a TransferPlan as a complete data-parallel training script, to run under ``msrun`` (or ``launch``).

The script is plain MindSpore plus ``LiveCurves`` (so the notebook can watch and stop it):

- ``set_device``, ``init()`` and ``DATA_PARALLEL`` with ``gradients_mean=True``; the rank and group size;
- a fixed seed, so every rank builds the same initial network (data parallelism never broadcasts it);
- the network, then the plan's own code (``TransferPlan.to_code()``: load by exact name, freeze, BatchNorm,
  optimizer over the trainable parameters and its reloaded state);
- each rank's shard of the training data (``num_shards=group_size, shard_id=rank``);
- ``Model.fit``/``Model.train`` with ``LiveCurves()`` and a ``ModelCheckpoint`` under
  ``$MS_NOTEBOOK_RUN_DIR/rank_<rank>/`` (``style="model"``), or MindSpore 2.x's own loop
  (``style="functional"``):
  ``value_and_grad``, ``nn.DistributedGradReducer``, a ``train_step``, the epochs logged with
  ``LiveCurves.steps``/``log`` and ``last``/``best`` saved per rank with ``LiveCurves.save_checkpoint``.

The network and data have to be written as code. For the demo's ``DigitsNet`` both are known; for any other
network pass ``network=`` (code that sets ``net``) and ``dataset=`` (code that sets ``train_dataset``, and
``eval_dataset`` if you want evaluation, using ``rank`` and ``group_size`` to shard).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ms_notebook.atomic import write_text

from .codegen import DEFAULT_LOSS, DEFAULT_OPTIMIZER, STYLES, functional_loop_lines

DEMO_TASKS = {5: "transfer", 10: "pretrain"}


def _demo_network(net: Any, seed: int) -> str | None:
    from ms_notebook.demo.network import DigitsNet

    if type(net) is not DigitsNet:
        return None
    return ("from ms_notebook.demo import DigitsNet\n\n"
            f"net = DigitsNet(num_classes={net.num_classes}, seed={seed})")


def _demo_dataset(net: Any, batch_size: int) -> str | None:
    from ms_notebook.demo.network import DigitsNet

    if type(net) is not DigitsNet or net.num_classes not in DEMO_TASKS:
        return None
    task = DEMO_TASKS[net.num_classes]
    return (
        "from ms_notebook import demo\n\n"
        f"train_factory, eval_factory = demo.datasets({task!r}, batch_size={batch_size}, "
        "num_shards=group_size, shard_id=rank)\n"
        "train_dataset = train_factory()  # this rank's shard\n"
        "eval_dataset = eval_factory()  # the whole test split on every rank: same metrics everywhere"
    )


def _plan_code(plan: Any, checkpoint: str, optimizer: str) -> str:
    code = plan.to_code(net_name="net", checkpoint=checkpoint, optimizer=optimizer)
    lines = code.splitlines()
    while lines and lines[0] in ("import mindspore as ms", "from mindspore import nn", ""):
        lines.pop(0)  # already imported at the top of the script
    return "\n".join(lines)


def _model_train(loss: str | None, keep_checkpoints: int) -> list[str]:
    """``Model.fit``/``Model.train`` with LiveCurves and a ModelCheckpoint per rank."""
    return [
        "# == Train. LiveCurves writes rank 0's curves for the notebook and honours its Stop button.",
        f"loss_fn = {loss or DEFAULT_LOSS}",
        'model = Model(net, loss_fn, optimizer, metrics={"accuracy", "loss"} if eval_dataset is not None '
        "else None)",
        "saving = CheckpointConfig(save_checkpoint_steps=train_dataset.get_dataset_size(), "
        f"keep_checkpoint_max={keep_checkpoints})",
        "steps = train_dataset.get_dataset_size()",
        'print(f"rank {rank} of {group_size}: {args.epochs} epochs of {steps} steps", flush=True)',
        'callbacks = [LiveCurves(label=f"rank {rank}"),',
        '             ModelCheckpoint(prefix="net", directory=rank_dir, config=saving)]',
        "if eval_dataset is not None:",
        "    model.fit(args.epochs, train_dataset, valid_dataset=eval_dataset, callbacks=callbacks,",
        "              dataset_sink_mode=False)",
        "else:",
        "    model.train(args.epochs, train_dataset, callbacks=callbacks, dataset_sink_mode=False)",
    ]


def _functional_train(loss: str | None, epochs: int, mode: str) -> list[str]:
    """MindSpore 2.x's loop with averaged gradients; LiveCurves logs it, honours Stop and saves per rank."""
    lines = functional_loop_lines(
        "net", loss or DEFAULT_LOSS, epochs, jit=mode == "graph", reducer=True,
        curves='LiveCurves(label=f"rank {rank}", epochs=args.epochs, net=net)', checkpoints=True,
    )
    lines = [line.replace(f"EPOCHS = {int(epochs)}", "EPOCHS = args.epochs") for line in lines]
    return ["# == Train. LiveCurves writes rank 0's curves for the notebook and honours its Stop button",
            "#    (every rank stops after the same step and saves rank_<r>/last.ckpt).",
            *lines[1:]]


def render_script(
    plan: Any,
    *,
    network: str | None = None,
    dataset: str | None = None,
    optimizer: str | None = None,
    loss: str | None = None,
    epochs: int = 3,
    batch_size: int = 16,
    checkpoint: str | os.PathLike[str] | None = None,
    device: str = "CPU",
    mode: str = "graph",
    seed: int = 1,
    keep_checkpoints: int = 2,
    style: str = "model",
) -> str:
    """The script's text (see the module docstring; ``write_script`` writes it)."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if mode not in ("graph", "pynative"):
        raise ValueError(f"mode must be 'graph' or 'pynative', got {mode!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    path = checkpoint if checkpoint is not None else plan.source.path
    if path is None:
        raise ValueError("the plan's checkpoint is not a file (it was given as a dict): "
                         "pass checkpoint=<path>")
    path = os.path.abspath(os.fspath(path))
    network = network or _demo_network(plan.net, seed)
    if network is None:
        raise ValueError(
            f"to_script cannot write code that builds a {type(plan.net).__name__}: pass network= with code "
            "that sets `net`, e.g. network='from mymodels import Net\\nnet = Net(num_classes=5)'"
        )
    dataset = dataset or _demo_dataset(plan.net, batch_size)
    if dataset is None:
        raise ValueError(
            "to_script needs dataset= with code that sets `train_dataset` (sharded with "
            "num_shards=group_size, shard_id=rank) and optionally `eval_dataset`"
        )
    plan_code = _plan_code(plan, repr(path), optimizer or DEFAULT_OPTIMIZER)
    summary = repr(plan).replace('"', "'")
    context_mode = "ms.GRAPH_MODE" if mode == "graph" else "ms.PYNATIVE_MODE"
    return "\n".join([
        '"""Data-parallel fine-tuning written by ms_notebook TransferPlan.to_script().',
        "",
        f"Plan: {summary}",
        f"Checkpoint: {path}",
        "",
        "Run it from a notebook with ms_notebook.launch(<this file>, workers=2), or in a shell with",
        "msrun --worker_num=2 --local_worker_num=2 --master_port=8118 --join=True <this file> [--epochs N]",
        '"""',
        "",
        "import argparse",
        "import os",
        "",
        'os.environ.setdefault("GLOG_v", "3")',
        "",
        "import mindspore as ms",
        "from mindspore import nn",
        "from mindspore.communication import get_group_size, get_rank, init",
        "from mindspore.train import CheckpointConfig, Model, ModelCheckpoint",
        "",
        "from ms_notebook import LiveCurves",
        "",
        "parser = argparse.ArgumentParser()",
        f'parser.add_argument("--epochs", type=int, default={epochs})',
        "args = parser.parse_args()",
        "",
        "# == The job: one process per rank; data parallelism with averaged gradients.",
        f"ms.set_device({device!r})",
        f"ms.set_context(mode={context_mode})",
        "init()",
        "ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)",
        "rank, group_size = get_rank(), get_group_size()",
        'run_dir = os.environ.get("MS_NOTEBOOK_RUN_DIR", "run")',
        'rank_dir = os.path.join(run_dir, f"rank_{rank}")',
        "",
        "# == The same seed on every rank: data parallelism does not broadcast the initial weights.",
        f"ms.set_seed({seed})",
        "",
        "# == The network, then the transfer plan (TransferPlan.to_code()).",
        network,
        "",
        plan_code,
        "",
        "# == Data: each rank trains on its own shard.",
        "eval_dataset = None",
        dataset,
        "",
        *(_functional_train(loss, epochs, mode) if style == "functional" else
          _model_train(loss, keep_checkpoints)),
        'print(f"rank {rank}: done", flush=True)',
        "",
    ])


def write_script(plan: Any, path: str | os.PathLike[str], **options: Any) -> Path:
    """Write the script to ``path`` atomically (temporary file, then rename); returns the path.

    ``options`` are those of :func:`render_script`.
    """
    text = render_script(plan, **options)
    compile(text, str(path), "exec")  # a generator bug must show here, not in N worker logs
    return write_text(Path(path).expanduser().resolve(), text)
