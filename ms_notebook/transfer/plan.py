"""TransferPlan: choose what to reload from a checkpoint and what to freeze, then apply it safely.

The plan knows, for every network parameter, whether the checkpoint holds it with the same shape (``match``),
with another shape (``shape_mismatch``) or not at all (``absent``). Defaults: reload every match,
freeze nothing.

``apply()`` closes the traps of doing this by hand with MindSpore 2.10:
- it loads by exact name only (``strict_load=True``: no suffix fallback that puts ``moments.head.weight`` into
  ``head.weight``) and never passes optimizer entries to the network;
- it validates and reads every selected tensor before touching the network, and restores the old values if
  loading still fails, so a failed apply changes nothing;
- it sets ``requires_grad`` *before* building the optimizer (an optimizer built earlier keeps updating
  "frozen" weights through momentum and weight decay), over ``net.trainable_params()`` only;
- it sets ``use_batch_statistics=False`` on frozen BatchNorm cells, because ``Model.train`` calls
  ``set_train(True)`` on the whole network and a frozen BN would otherwise keep updating its moving
  statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ms_notebook.transfer.patterns import PatternError, match_one, select
from ms_notebook.transfer.report import TransferReport
from ms_notebook.transfer.source import CheckpointSource

MATCH, SHAPE_MISMATCH, ABSENT = "match", "shape_mismatch", "absent"
STATUS_LABELS = {MATCH: "match", SHAPE_MISMATCH: "shape mismatch", ABSENT: "absent in checkpoint"}
# optimizer state that follows the training step rather than one parameter; reloaded with the moments
STEP_STATE = ("global_step", "beta1_power", "beta2_power")


# Marks left on what a plan froze, so that a later plan on the same network can undo it.
_FROZEN_MARK = "_ms_notebook_frozen"
_BN_STATS_MARK = "_ms_notebook_use_batch_statistics"


class TransferError(ValueError):
    """The plan cannot be applied (nothing was changed)."""


def _fmt_shape(shape: tuple[int, ...] | None) -> str:
    return (
        "—"
        if shape is None
        else "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
    )


def _dtype_kind(dtype: Any) -> str:
    from mindspore.common import dtype as mstype

    if dtype in mstype.float_type:
        return "float"
    if dtype in mstype.int_type or dtype in mstype.uint_type:
        return "int"
    return str(dtype)


def batchnorm_cells(net: Any) -> list[tuple[str, Any]]:
    """(cell path, cell) of every BatchNorm cell in ``net``, in network order."""
    from mindspore.nn.layer.normalization import _BatchNorm

    return [(name, cell) for name, cell in net.cells_and_names() if isinstance(cell, _BatchNorm)]


class TransferPlan:
    """What to reload from ``checkpoint`` into ``net`` and what to freeze; chainable, then ``apply()``."""

    def __init__(self, net: Any, checkpoint: Any) -> None:
        self.net = net
        self.source = CheckpointSource(checkpoint)
        self._params: dict[str, Any] = {}
        for _, param in net.parameters_and_names():
            self._params.setdefault(param.name, param)
        self.names: list[str] = list(self._params)
        self.shapes: dict[str, tuple[int, ...]] = {
            n: tuple(int(d) for d in p.shape) for n, p in self._params.items()
        }
        # parameters that can train at all (BN moving statistics cannot): freezing only ever applies to these.
        # One frozen by an earlier plan is marked, so a later plan on the same network can unfreeze it.
        self.trainable_capable: set[str] = {
            n for n, p in self._params.items() if p.requires_grad or getattr(p, _FROZEN_MARK, False)
        }
        self.checkpoint_shapes: dict[str, tuple[int, ...]] = self.source.shapes()
        self.status: dict[str, str] = {}
        for name in self.names:
            ck_shape = self.checkpoint_shapes.get(name)
            if ck_shape is None:
                self.status[name] = ABSENT
            elif ck_shape != self.shapes[name]:
                self.status[name] = SHAPE_MISMATCH
            else:
                self.status[name] = MATCH
        self._reload: set[str] = {n for n in self.names if self.status[n] == MATCH}
        self._frozen: set[str] = set()
        self.report: TransferReport | None = None

    # ---- selection ----
    def reload(self, *patterns: str) -> TransferPlan:
        """Reload the selected parameters from the checkpoint (only name+shape matches can be reloaded)."""
        for pattern in patterns:
            hits = select([pattern], self.names)
            ok = [n for n in hits if self.status[n] == MATCH]
            bad = [n for n in hits if self.status[n] != MATCH]
            if bad and (not ok or pattern in self._params):
                raise TransferError(
                    f"cannot reload {pattern!r}: " + "; ".join(self._why_not(n) for n in bad[:5])
                )
            self._reload.update(ok)
        return self

    def keep_init(self, *patterns: str) -> TransferPlan:
        """Keep the network's own (initial) values for the selected parameters."""
        self._reload.difference_update(select(patterns, self.names))
        return self

    def freeze(self, *patterns: str) -> TransferPlan:
        """Freeze the selected parameters (``requires_grad=False``; frozen BN cells stop updating stats)."""
        self._frozen.update(select(patterns, self.names))
        return self

    def unfreeze(self, *patterns: str) -> TransferPlan:
        """Train the selected parameters."""
        self._frozen.difference_update(select(patterns, self.names))
        return self

    def freeze_backbone(self) -> TransferPlan:
        """Freeze every reloaded parameter, train what is new or reshaped: the classic "new head" recipe."""
        self._frozen = set(self._reload)
        return self

    def train_last(self, n: int) -> TransferPlan:
        """Train only the last ``n`` top-level blocks (network order); freeze everything before them."""
        blocks = self.blocks
        if not isinstance(n, int) or n < 0 or n > len(blocks):
            raise TransferError(
                f"train_last(n) needs 0 <= n <= {len(blocks)} (blocks: {', '.join(blocks)}), got {n!r}"
            )
        trained = set(blocks[len(blocks) - n :])
        self._frozen = {name for name in self.names if name.split(".")[0] not in trained}
        return self

    def matches(self, pattern: str) -> list[str]:
        """Parameter names a pattern selects (empty list instead of an error)."""
        return match_one(pattern, self.names)

    # ---- what the plan says ----
    @property
    def blocks(self) -> list[str]:
        """Top-level blocks owning parameters, in network order."""
        return list(dict.fromkeys(name.split(".")[0] for name in self.names))

    @property
    def reloaded(self) -> list[str]:
        return [n for n in self.names if n in self._reload]

    @property
    def frozen(self) -> list[str]:
        """Trainable parameters the plan freezes."""
        return [n for n in self.names if n in self._frozen and n in self.trainable_capable]

    @property
    def trainable(self) -> list[str]:
        return [n for n in self.names if n in self.trainable_capable and n not in self._frozen]

    def is_frozen(self, name: str) -> bool:
        return name in self._frozen

    def frozen_batchnorm(self) -> list[str]:
        """Paths of the BatchNorm cells the plan freezes: all their trainable parameters frozen."""
        out = []
        for path, cell in batchnorm_cells(self.net):
            own = [p.name for p in cell.get_parameters()]
            capable = [n for n in own if n in self.trainable_capable]
            considered = capable or own
            if considered and all(n in self._frozen for n in considered):
                out.append(path)
        return out

    def _why_not(self, name: str) -> str:
        if self.status[name] == SHAPE_MISMATCH:
            return (
                f"{name}: shape mismatch, checkpoint {_fmt_shape(self.checkpoint_shapes[name])} "
                f"vs network {_fmt_shape(self.shapes[name])}"
            )
        if self.status[name] == ABSENT:
            return f"{name}: absent from checkpoint"
        return f"{name}: not selected"

    def reason(self, name: str) -> str:
        """Why a parameter is not reloaded ('' when it is)."""
        return "" if name in self._reload else self._why_not(name).split(": ", 1)[1]

    def summary(self) -> dict[str, Any]:
        """Counts for the live summary: tensors and parameters reloaded, trainable and frozen."""
        numel = {n: int(self._params[n].size) for n in self.names}
        capable = sum(numel[n] for n in self.trainable_capable)
        trainable = sum(numel[n] for n in self.trainable)
        frozen = capable - trainable
        return {
            "tensors": len(self.names),
            "tensors_reloaded": len(self._reload),
            "params_reloaded": sum(numel[n] for n in self._reload),
            "params_total": sum(numel.values()),
            "params_trainable": trainable,
            "params_frozen": frozen,
            "percent_frozen": 100.0 * frozen / capable if capable else 0.0,
        }

    def rows(self) -> list[dict[str, Any]]:
        """One row per network parameter: name, shapes, status, reload, frozen/trainable, reason."""
        return [
            {
                "name": n,
                "shape": _fmt_shape(self.shapes[n]),
                "checkpoint_shape": _fmt_shape(self.checkpoint_shapes.get(n)),
                "status": self.status[n],
                "reload": n in self._reload,
                "frozen": n in self._frozen and n in self.trainable_capable,
                "capable": n in self.trainable_capable,
                "trainable": n in self.trainable_capable and n not in self._frozen,
                "numel": int(self._params[n].size),
                "reason": self.reason(n),
            }
            for n in self.names
        ]

    def to_code(
        self, net_name: str = "net", checkpoint: str | None = None, optimizer: str | None = None
    ) -> str:
        """Plain MindSpore code doing what ``apply()`` does (see ``ms_notebook.transfer.codegen``)."""
        from ms_notebook.transfer.codegen import render

        return render(self, net_name=net_name, checkpoint=checkpoint, optimizer=optimizer)

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"TransferPlan({s['tensors_reloaded']}/{s['tensors']} tensors reloaded, "
            f"{s['params_trainable']:,} trainable parameters, {s['percent_frozen']:.1f}% frozen)"
        )

    # ---- apply ----
    def _read_selected(self) -> dict[str, Any]:
        """Read and check every selected tensor; TransferError lists every problem, changing nothing."""
        import mindspore as ms

        current = {}
        for _, param in self.net.parameters_and_names():
            current.setdefault(param.name, param)
        loaded, problems = {}, []
        for name in self.reloaded:
            param = current.get(name)
            if param is None:
                problems.append(f"{name}: no longer in the network")
                continue
            try:
                tensor = self.source.tensor(name)
            except Exception as exc:  # a missing or unreadable entry: report it, do not half-load
                problems.append(f"{name}: cannot read from checkpoint ({exc})")
                continue
            if tuple(tensor.shape) != tuple(param.shape):
                problems.append(
                    f"{name}: shape mismatch, checkpoint {_fmt_shape(tuple(tensor.shape))} "
                    f"vs network {_fmt_shape(tuple(param.shape))}"
                )
                continue
            if tensor.dtype != param.dtype:
                if _dtype_kind(tensor.dtype) != _dtype_kind(param.dtype):
                    problems.append(f"{name}: dtype {tensor.dtype} in checkpoint cannot become {param.dtype}")
                    continue
                tensor = tensor.astype(param.dtype)
            loaded[name] = ms.Parameter(tensor, name=name, requires_grad=param.requires_grad)
        if problems:
            raise TransferError("nothing was loaded; " + "; ".join(problems))
        return loaded

    def apply(
        self, optimizer: Callable[[list[Any]], Any] | None = None, freeze_bn_stats: bool = True
    ) -> TransferReport:
        """Load the selected tensors, set ``requires_grad``, fix BN statistics, build the optimizer."""
        import mindspore as ms

        if optimizer is not None and not callable(optimizer):
            raise TypeError("optimizer must be a factory: `lambda params: nn.Momentum(params, 0.01, 0.9)`")
        loaded = self._read_selected()
        backup = {name: self._params[name].data.copy() for name in loaded}
        try:
            not_loaded, ckpt_not_loaded = ms.load_param_into_net(self.net, loaded, strict_load=True)
            expected = set(self.names) - set(loaded)
            if ckpt_not_loaded or set(not_loaded) != expected:
                raise TransferError(
                    f"MindSpore loaded an unexpected set of parameters "
                    f"(not loaded: {sorted(not_loaded)[:5]}, "
                    f"unused: {sorted(ckpt_not_loaded)[:5]})"
                )
        except Exception:
            for name, value in backup.items():
                self._params[name].set_data(value)
            raise
        for name in self.trainable_capable:
            frozen = name in self._frozen
            self._params[name].requires_grad = not frozen
            setattr(self._params[name], _FROZEN_MARK, frozen)
        frozen_bn = self.frozen_batchnorm()
        wanted = set(frozen_bn) if freeze_bn_stats else set()
        for path, cell in batchnorm_cells(self.net):
            if path in wanted:
                if not hasattr(cell, _BN_STATS_MARK):  # remember the user's setting, to restore it later
                    setattr(cell, _BN_STATS_MARK, cell.use_batch_statistics)
                cell.use_batch_statistics = False
            elif hasattr(cell, _BN_STATS_MARK):  # fixed by an earlier plan, no longer frozen: restore
                cell.use_batch_statistics = getattr(cell, _BN_STATS_MARK)
                delattr(cell, _BN_STATS_MARK)
        built = None
        state: list[dict[str, str]] = []
        if optimizer is not None:
            built = optimizer(self.net.trainable_params())
            state = self._load_optimizer_state(built)
        self.report = TransferReport(
            rows=self.rows(),
            optimizer=built,
            optimizer_state=state,
            frozen_batchnorm=frozen_bn if freeze_bn_stats else [],
            summary=self.summary(),
        )
        return self.report

    def _load_optimizer_state(self, opt: Any) -> list[dict[str, str]]:
        """Load saved optimizer state of reloaded, still-trainable parameters; drop the rest, saying why."""
        import mindspore as ms

        keep = set(self.reloaded) & set(self.trainable)
        rows, to_load = [], {}
        for _, param in opt.parameters_and_names():
            name = param.name
            if name in self._params:  # the network's own parameters, held by reference
                continue
            target = name.partition(".")[2]
            if name in STEP_STATE:
                reason = "" if name in self.checkpoint_shapes else "not in checkpoint"
            elif target in self._params:
                if target not in keep:
                    reason = f"{target} is {'re-initialised' if target not in self._reload else 'frozen'}"
                    if self.status[target] == SHAPE_MISMATCH:
                        reason = f"{target} is reshaped (shape mismatch)"
                elif self.checkpoint_shapes.get(name) != tuple(int(d) for d in param.shape):
                    reason = "not in checkpoint" if name not in self.checkpoint_shapes else "shape mismatch"
                else:
                    reason = ""
            else:
                rows.append(
                    {"name": name, "action": "kept", "reason": "hyper-parameter of the new optimizer"}
                )
                continue
            if reason:
                rows.append({"name": name, "action": "dropped", "reason": reason})
                continue
            tensor = self.source.tensor(name)
            if tensor.dtype != param.dtype:
                tensor = tensor.astype(param.dtype)
            to_load[name] = ms.Parameter(tensor, name=name, requires_grad=False)
            rows.append({"name": name, "action": "loaded", "reason": ""})
        if not any(r["action"] == "loaded" and r["name"] not in STEP_STATE for r in rows):
            # no moment survives: carrying the step (Adam's beta powers) over would skew bias correction
            for r in rows:
                if r["name"] in STEP_STATE and r["action"] == "loaded":
                    r.update(action="dropped", reason="no parameter state carried over: the step restarts")
                    to_load.pop(r["name"], None)
        listed = {r["name"] for r in rows}
        for name in self.checkpoint_shapes:
            target = name.partition(".")[2]
            if (
                name not in listed
                and name not in self._params
                and target in self._params
                and (target not in self.trainable_capable or target in self._frozen)
            ):
                rows.append({"name": name, "action": "dropped", "reason": f"{target} is frozen"})
        if to_load:
            _, unused = ms.load_param_into_net(opt, to_load, strict_load=True)
            if unused:
                raise TransferError(f"optimizer state not loaded: {sorted(unused)[:5]}")
        return rows


__all__ = ["STATUS_LABELS", "PatternError", "TransferError", "TransferPlan"]
