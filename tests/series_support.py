"""A real checkpoint series: the demo's DigitsNet trained with ``Model.train`` and MindSpore's
``ModelCheckpoint``, optionally with a NaN written into one weight at a known global step."""

from __future__ import annotations

import os
from pathlib import Path


def train_series(
    folder: str | os.PathLike[str],
    epochs: int = 2,
    save_steps: int = 3,
    batch_size: int = 64,
    nan_at: int | None = None,
    nan_param: str = "block3.dense.weight",
    prefix: str = "demo",
    fmt: str = "ckpt",
) -> list[Path]:
    """Train and save every ``save_steps`` steps into ``folder``; returns the files written (by name order).

    With ``nan_at``, a callback placed before ``ModelCheckpoint`` sets ``nan_param[0, 0]`` to NaN at the end
    of global step ``nan_at``, so the checkpoint of that step is the first to hold it (if one is saved there).
    """
    import mindspore as ms
    import numpy as np
    from mindspore import Model, nn
    from mindspore.train.callback import Callback, CheckpointConfig, ModelCheckpoint

    from ms_notebook.demo import DigitsNet, datasets

    ms.set_context(mode=ms.GRAPH_MODE)
    net = DigitsNet(seed=0)
    train, _ = datasets("pretrain", batch_size=batch_size)
    opt = nn.Momentum(net.trainable_params(), 0.05, 0.9)
    model = Model(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"), opt)

    class InjectNaN(Callback):
        def on_train_step_end(self, run_context):
            if run_context.original_args().cur_step_num == nan_at:
                param = dict(net.parameters_and_names())[nan_param]
                value = param.asnumpy().copy()
                value.flat[0] = np.nan
                param.set_data(ms.Tensor(value))

    config = CheckpointConfig(save_checkpoint_steps=save_steps, keep_checkpoint_max=1000, format=fmt)
    callbacks = ([InjectNaN()] if nan_at is not None else []) + [ModelCheckpoint(prefix, str(folder), config)]
    model.train(epochs, train(), callbacks=callbacks)
    return sorted(p for p in Path(folder).iterdir() if p.suffix in (".ckpt", ".safetensors"))
