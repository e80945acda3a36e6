"""Checkpoint index: open a MindSpore ``.ckpt`` or ``.safetensors`` file (or a set of them: shards, per-rank
files with their strategy) and know what is inside instantly.

Only headers are read when a file is opened; values are read on demand, statistics in bounded chunks.
This package never imports MindSpore (nor protobuf): it parses the wire format itself.
"""

from __future__ import annotations

from .errors import CheckpointError
from .index import Checkpoint, open_checkpoint
from .info import TensorInfo
from .series import CheckpointSeries, open_series
from .sets import CheckpointSet
from .stats import TensorStats
from .tree import Node

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointSeries",
    "CheckpointSet",
    "Node",
    "TensorInfo",
    "TensorStats",
    "open_checkpoint",
    "open_series",
]
