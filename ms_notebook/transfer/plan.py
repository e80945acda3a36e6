"""TransferPlan: choose what to reload from a checkpoint and what to freeze, then apply it safely.

The plan knows, for every network parameter, whether the checkpoint holds it with the same shape (``match``),
with another shape (``shape_mismatch``) or not at all (``absent``). Defaults: reload every match,
freeze nothing. Names may differ by a consistent prefix (``prefix_map={"backbone.": ""}``, see
:mod:`ms_notebook.checkpoint.prefix`). ``blocks`` are the steps ``train_last(n)`` and discriminative learning
rates move in (:mod:`ms_notebook.transfer.blocks`).

``apply()`` closes the traps of doing this by hand with MindSpore 2.10:
- it loads by exact name only (``strict_load=True``: no suffix fallback that puts ``moments.head.weight`` into
  ``head.weight``) and never passes optimizer entries to the network;
- it is all or nothing: every selected tensor and every optimizer state entry is read and checked, and the
  optimizer is built over the parameters that will train, before the network is touched; if anything still
  fails, every value, ``requires_grad`` flag and BatchNorm setting is put back;
- the optimizer only ever sees the trainable parameters (an optimizer built over "frozen" weights keeps
  updating them through momentum and weight decay), as one list or as parameter groups with discriminative
  learning rates (``lr=slice(lo, hi)``, :mod:`ms_notebook.transfer.rates`);
- it sets ``use_batch_statistics=False`` on frozen BatchNorm cells, because ``Model.train`` calls
  ``set_train(True)`` on the whole network and a frozen BN would otherwise keep updating its moving
  statistics.

``warnings()`` lists the traps a plan walks into before it is applied (frozen at random initial values,
nothing to train, a prefix that would match).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ms_notebook.checkpoint.prefix import PrefixMap, count_matches, detect_prefix
from ms_notebook.transfer.blocks import Block, cell_parameters, network_blocks
from ms_notebook.transfer.patterns import PatternError, match_one, select
from ms_notebook.transfer.rates import block_rates, group_spec, parameter_groups
from ms_notebook.transfer.report import TransferReport
from ms_notebook.transfer.source import CheckpointSource
from ms_notebook.transfer.undo import Undo

MATCH, SHAPE_MISMATCH, ABSENT = "match", "shape_mismatch", "absent"
STATUS_LABELS = {MATCH: "match", SHAPE_MISMATCH: "shape mismatch", ABSENT: "absent in checkpoint"}
# optimizer state that follows the training step rather than one parameter; reloaded with the moments
STEP_STATE = ("global_step", "beta1_power", "beta2_power")


# Marks left on what a plan froze, so that a later plan on the same network can undo it.
_FROZEN_MARK = "_ms_notebook_frozen"
_BN_STATS_MARK = "_ms_notebook_use_batch_statistics"


class TransferError(ValueError):
    """The plan cannot be applied (nothing was changed)."""


@dataclass(frozen=True)
class PlanWarning:
    """A trap the plan would walk into: ``kind``, a sentence to show, the parameter names concerned."""

    kind: str  # nothing_to_train, frozen_at_init, bn_stats_at_init, kept_trainable, prefix, no_match
    message: str
    names: tuple[str, ...] = field(default=())


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


def _some(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def batchnorm_cells(net: Any) -> list[tuple[str, Any]]:
    """(cell path, cell) of every BatchNorm cell in ``net``, in network order."""
    from mindspore.nn.layer.normalization import _BatchNorm

    return [(name, cell) for name, cell in net.cells_and_names() if isinstance(cell, _BatchNorm)]


class TransferPlan:
    """What to reload from ``checkpoint`` into ``net`` and what to freeze; chainable, then ``apply()``.

    ``prefix_map``: ``{checkpoint prefix: network prefix}`` when the names differ by a consistent prefix (a
    checkpoint saved inside a wrapper cell), or ``"auto"`` to use the detected one (``suggested_prefix_map``).
    """

    def __init__(self, net: Any, checkpoint: Any, prefix_map: Mapping[str, str] | str | None = None) -> None:
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
        weights = self.source.weight_names()
        detected = detect_prefix(weights, self.names)
        if isinstance(prefix_map, str):
            if prefix_map != "auto":
                raise ValueError(f"prefix_map must be a dict, 'auto' or None, got {prefix_map!r}")
            prefix_map = detected or {}
        self.prefix_map = PrefixMap(prefix_map)
        self.suggested_prefix_map: dict[str, str] | None = None if self.prefix_map else detected
        self._suggested_matches = (
            count_matches(PrefixMap(detected), weights, self.names) if self.suggested_prefix_map else 0
        )
        # the checkpoint's name of every network parameter (the same name unless a prefix map says otherwise)
        self.ckpt_names: dict[str, str] = {n: self.prefix_map.to_checkpoint(n) for n in self.names}
        self.status: dict[str, str] = {}
        for name in self.names:
            ck_shape = self.checkpoint_shapes.get(self.ckpt_names[name])
            if ck_shape is None:
                self.status[name] = ABSENT
            elif ck_shape != self.shapes[name]:
                self.status[name] = SHAPE_MISMATCH
            else:
                self.status[name] = MATCH
        self.block_list: list[Block] = network_blocks(net)
        self._cells = cell_parameters(net)
        self._reload: set[str] = {n for n in self.names if self.status[n] == MATCH}
        self._frozen: set[str] = set()
        self._kept_trainable: set[str] = set()  # not reloaded, so a preset left them trainable
        self.report: TransferReport | None = None
        self.optimizer_factory: Callable[[Any], Any] | None = None  # the factory of the last apply()

    # ---- selection ----
    def _select(self, patterns: tuple[str, ...]) -> list[str]:
        return select(patterns, self.names, self._cells)

    def reload(self, *patterns: str) -> TransferPlan:
        """Reload the selected parameters from the checkpoint (only name+shape matches can be reloaded)."""
        for pattern in patterns:
            hits = self._select((pattern,))
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
        self._reload.difference_update(self._select(patterns))
        return self

    def freeze(self, *patterns: str) -> TransferPlan:
        """Freeze the selected parameters (``requires_grad=False``; frozen BN cells stop updating stats)."""
        self._frozen.update(self._select(patterns))
        return self

    def unfreeze(self, *patterns: str) -> TransferPlan:
        """Train the selected parameters."""
        self._frozen.difference_update(self._select(patterns))
        return self

    def unfreeze_all(self) -> TransferPlan:
        """Train every parameter that can train."""
        self._frozen = set()
        self._kept_trainable = set()
        return self

    def freeze_backbone(self) -> TransferPlan:
        """Freeze every reloaded parameter, train what is new or reshaped: the classic "new head" recipe."""
        self._frozen = set(self._reload)
        self._kept_trainable = set()
        return self

    def train_last(self, n: int) -> TransferPlan:
        """Train only the last ``n`` blocks (network order); freeze the reloaded parameters before them.

        A parameter before them that is not reloaded (a re-initialised auxiliary head) stays trainable:
        frozen, it would keep its random initial values. ``warnings()`` names it.
        """
        blocks = self.blocks
        if not isinstance(n, int) or isinstance(n, bool) or n < 0 or n > len(blocks):
            raise TransferError(
                f"train_last(n) needs 0 <= n <= {len(blocks)} (blocks: {', '.join(blocks)}), got {n!r}"
            )
        trained = {name for block in self.block_list[len(blocks) - n :] for name in block.names}
        before = {name for name in self.names if name not in trained}
        self._kept_trainable = {name for name in before if name not in self._reload}
        self._frozen = before - self._kept_trainable
        return self

    def matches(self, pattern: str) -> list[str]:
        """Parameter names a pattern selects (empty list instead of an error)."""
        return match_one(pattern, self.names, self._cells)

    # ---- what the plan says ----
    @property
    def blocks(self) -> list[str]:
        """The network's blocks in network order: cell paths (``layer4``, ``blocks.11``) or parameters."""
        return [block.path for block in self.block_list]

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

    def block_rates(self, lr: float | slice) -> dict[str, float]:
        """Block -> learning rate for ``lr`` (a number, ``slice(lo, hi)`` or fastai's ``slice(hi)``)."""
        return dict(zip(self.blocks, block_rates(lr, len(self.blocks)), strict=True))

    def block_table(self, lr: float | slice | None = None) -> list[dict[str, Any]]:
        """One row per block: tensors, parameters, share of the network, reloaded, training (and lr)."""
        total = sum(int(p.size) for p in self._params.values()) or 1
        rates = self.block_rates(lr) if lr is not None else {}
        rows = []
        for block in self.block_list:
            names = list(block.names)
            reloaded = sum(n in self._reload for n in names)
            capable = [n for n in names if n in self.trainable_capable]
            frozen = sum(n in self._frozen for n in capable)
            row = {
                "block": block.path,
                "tensors": len(names),
                "params": block.numel,
                "share": 100.0 * block.numel / total,
                "reloaded": "all" if reloaded == len(names) else ("none" if not reloaded else "some"),
                "training": (
                    "not trainable" if not capable
                    else "frozen" if frozen == len(capable)
                    else "trainable" if not frozen
                    else "mixed"
                ),
            }
            if lr is not None:
                row["lr"] = rates[block.path]
            rows.append(row)
        return rows

    def _why_not(self, name: str) -> str:
        ck = self.ckpt_names[name]
        if self.status[name] == SHAPE_MISMATCH:
            return (
                f"{name}: shape mismatch, checkpoint {_fmt_shape(self.checkpoint_shapes[ck])} "
                f"vs network {_fmt_shape(self.shapes[name])}"
            )
        if self.status[name] == ABSENT:
            return f"{name}: absent from checkpoint" + (f" (as {ck})" if ck != name else "")
        return f"{name}: not selected"

    def reason(self, name: str) -> str:
        """Why a parameter is not reloaded ('' when it is)."""
        return "" if name in self._reload else self._why_not(name).split(": ", 1)[1]

    def _block_of(self) -> dict[str, str]:
        return {name: block.path for block in self.block_list for name in block.names}

    def warnings(self, freeze_bn_stats: bool = True) -> list[PlanWarning]:
        """The traps this plan walks into, before ``apply()``: each with a sentence in plain words."""
        out: list[PlanWarning] = []
        block_of = self._block_of()
        if not self.trainable:
            out.append(PlanWarning(
                "nothing_to_train",
                "Nothing to train: every parameter is frozen, so an optimizer would get no parameters. "
                "Unfreeze at least the head (or a block) before Apply.",
            ))
        at_init = [n for n in self.frozen if n not in self._reload]
        by_block: dict[str, list[str]] = {}
        for name in at_init:
            by_block.setdefault(block_of.get(name, name), []).append(name)
        for block, names in by_block.items():
            out.append(PlanWarning(
                "frozen_at_init",
                f"{block}: {len(names)} tensor{'s' if len(names) > 1 else ''} frozen but not reloaded "
                f"({_some(names)}): {'they' if len(names) > 1 else 'it'} would stay at the initial (random) "
                "values. Tick Reload, or unfreeze them.",
                tuple(names),
            ))
        if freeze_bn_stats:
            fixed = set(self.frozen_batchnorm())
            for path, cell in batchnorm_cells(self.net):
                if path not in fixed:
                    continue
                stats = [p.name for p in cell.get_parameters() if p.name not in self.trainable_capable]
                stale = [n for n in stats if n not in self._reload]
                if stale:
                    out.append(PlanWarning(
                        "bn_stats_at_init",
                        f"{path}: BatchNorm statistics fixed but not reloaded ({_some(stale)}): "
                        "normalisation would use the initial mean 0 and variance 1.",
                        tuple(stale),
                    ))
        kept = [n for n in self.trainable if n in self._kept_trainable and n not in self._reload]
        if kept:
            out.append(PlanWarning(
                "kept_trainable",
                f"Kept trainable although before the trained blocks, because not reloaded: {_some(kept)} "
                "(frozen, they would keep their random initial values).",
                tuple(kept),
            ))
        if self.suggested_prefix_map:
            out.append(PlanWarning(
                "prefix",
                f"The checkpoint's names differ from the network's by a consistent prefix: "
                f"TransferPlan(net, checkpoint, prefix_map={self.suggested_prefix_map!r}) matches "
                f"{self._suggested_matches} of {len(self.names)} parameters.",
            ))
        elif not any(s == MATCH for s in self.status.values()):
            out.append(PlanWarning(
                "no_match",
                "No network parameter is in the checkpoint with the same name and shape: nothing to reload.",
            ))
        return out

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
                "checkpoint_shape": _fmt_shape(self.checkpoint_shapes.get(self.ckpt_names[n])),
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
        self,
        net_name: str = "net",
        checkpoint: str | None = None,
        optimizer: str | None = None,
        lr: float | slice | None = None,
        style: str = "model",
        epochs: int = 3,
        loss: str | None = None,
    ) -> str:
        """Plain MindSpore code doing what ``apply()`` does (see ``ms_notebook.transfer.codegen``);
        ``style="functional"`` goes on with MindSpore 2.x's ``value_and_grad``/``train_step`` loop."""
        from ms_notebook.transfer.codegen import render

        return render(self, net_name=net_name, checkpoint=checkpoint, optimizer=optimizer, lr=lr, style=style,
                      epochs=epochs, loss=loss)

    def to_script(self, path: Any, **options: Any) -> Any:
        """Write a complete data-parallel training script doing this plan (see ``transfer/script.py``)."""
        from ms_notebook.transfer.script import write_script

        return write_script(self, path, **options)

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"TransferPlan({s['tensors_reloaded']}/{s['tensors']} tensors reloaded, "
            f"{s['params_trainable']:,} trainable parameters, {s['percent_frozen']:.1f}% frozen)"
        )

    # ---- apply ----
    def lr_groups(self, lr: float | slice) -> list[dict[str, Any]]:
        """The parameter groups ``apply(lr=...)`` gives the optimizer factory, by name (``group_spec``)."""
        blocks = [(block.path, block.names) for block in self.block_list]
        return group_spec(blocks, self.trainable, lr)

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
            ck = self.ckpt_names[name]
            try:
                tensor = self.source.tensor(ck)
            except Exception as exc:  # a missing or unreadable entry: report it, do not half-load
                problems.append(f"{name}: cannot read {ck} from checkpoint ({exc})")
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

    def _build_optimizer(self, factory: Callable[[Any], Any], lr: float | slice | None) -> tuple[Any, list]:
        """Call the factory over the parameters that will train (a list, or groups for ``lr``); check it."""
        trainable = self.trainable
        if not trainable:
            raise TransferError(
                "nothing to train: the plan freezes every parameter, so the optimizer would get none "
                "(nothing was changed). Unfreeze at least the head, e.g. plan.unfreeze('head') or "
                "plan.train_last(1)."
            )
        groups: list[dict[str, Any]] = []
        if lr is None:
            params: Any = [self._params[n] for n in trainable]
        else:
            groups = self.lr_groups(lr)
            params = parameter_groups(groups, self._params)
        try:
            built = factory(params)
        except Exception as exc:
            raise TransferError(
                f"the optimizer factory failed ({type(exc).__name__}: {exc}); nothing was changed"
            ) from exc
        held = getattr(built, "parameters", None)
        if held is None or not hasattr(built, "parameters_and_names"):
            raise TransferError(
                f"the optimizer factory returned {type(built).__name__}, not a MindSpore optimizer; "
                "nothing was changed"
            )
        got = {p.name for p in held}
        extra, missing = sorted(got - set(trainable)), sorted(set(trainable) - got)
        if extra or missing:
            detail = f"it also holds {_some(extra)}" if extra else f"it leaves out {_some(missing)}"
            raise TransferError(
                "the optimizer must be built over the parameters the factory receives (the ones that will "
                f"train): {detail}. Use `lambda params: nn.Momentum(params, ...)`, not "
                "net.trainable_params() (frozen parameters would keep moving); nothing was changed"
            )
        return built, groups

    def apply(
        self,
        optimizer: Callable[[Any], Any] | None = None,
        freeze_bn_stats: bool = True,
        lr: float | slice | None = None,
        load: bool = True,
    ) -> TransferReport:
        """Load the selected tensors, set ``requires_grad``, fix BN statistics, build the optimizer.

        ``optimizer`` is a factory over the trainable parameters (``lambda params: nn.Adam(params, 1e-3)``);
        with ``lr`` (a number, ``slice(lo, hi)`` or ``slice(hi)``) it receives MindSpore parameter groups with
        one rate per block instead of a list. ``load=False`` changes only what trains (no tensor or optimizer
        state is read): how ``Runner.fine_tune`` unfreezes between phases. All or nothing: on any failure the
        network is left exactly as it was.
        """
        import mindspore as ms

        if optimizer is not None and not callable(optimizer):
            raise TypeError("optimizer must be a factory: `lambda params: nn.Momentum(params, 0.01, 0.9)`")
        if lr is not None:
            if optimizer is None:
                raise TransferError("lr needs an optimizer factory: apply(optimizer=..., lr=slice(lo, hi))")
            block_rates(lr, 1)  # validates the value before anything is read
        loaded = self._read_selected() if load else {}
        built, groups, state, state_values = None, [], [], {}
        if optimizer is not None:
            built, groups = self._build_optimizer(optimizer, lr)
            if load:
                state, state_values = self._read_optimizer_state(built)
        frozen_bn = self.frozen_batchnorm()
        bn = batchnorm_cells(self.net)
        undo = Undo(self._params, loaded, bn, (_FROZEN_MARK,), (_BN_STATS_MARK,))
        try:
            if loaded:
                not_loaded, ckpt_not_loaded = ms.load_param_into_net(self.net, loaded, strict_load=True)
                expected = set(self.names) - set(loaded)
                if ckpt_not_loaded or set(not_loaded) != expected:
                    raise TransferError(
                        f"MindSpore loaded an unexpected set of parameters "
                        f"(not loaded: {sorted(not_loaded)[:5]}, "
                        f"unused: {sorted(ckpt_not_loaded)[:5]})"
                    )
            for name in self.trainable_capable:
                frozen = name in self._frozen
                self._params[name].requires_grad = not frozen
                setattr(self._params[name], _FROZEN_MARK, frozen)
            wanted = set(frozen_bn) if freeze_bn_stats else set()
            for path, cell in bn:
                if path in wanted:
                    if not hasattr(cell, _BN_STATS_MARK):  # remember the user's setting, to restore it later
                        setattr(cell, _BN_STATS_MARK, cell.use_batch_statistics)
                    cell.use_batch_statistics = False
                elif hasattr(cell, _BN_STATS_MARK):  # fixed by an earlier plan, no longer frozen: restore
                    cell.use_batch_statistics = getattr(cell, _BN_STATS_MARK)
                    delattr(cell, _BN_STATS_MARK)
            if state_values:
                _, unused = ms.load_param_into_net(built, state_values, strict_load=True)
                if unused:
                    raise TransferError(f"optimizer state not loaded: {sorted(unused)[:5]}")
        except BaseException as exc:
            undo.restore()
            if isinstance(exc, TransferError) or not isinstance(exc, Exception):
                raise
            raise TransferError(
                f"applying the plan failed ({type(exc).__name__}: {exc}); the network was restored"
            ) from exc
        self.optimizer_factory = optimizer if optimizer is not None else self.optimizer_factory
        self.report = TransferReport(
            rows=self.rows(),
            optimizer=built,
            optimizer_state=state,
            frozen_batchnorm=frozen_bn if freeze_bn_stats else [],
            summary=self.summary(),
            param_groups=[
                {"block": g["block"], "lr": g["lr"], "tensors": len(g["names"]), "weight_decay": decay}
                for g, decay in zip(groups, _group_decays(built, groups), strict=True)
            ],
        )
        return self.report

    def _state_ck_name(self, name: str) -> str:
        """The checkpoint's name of optimizer state ``name`` (``moments.x`` -> ``moments.<ck of x>``)."""
        if name in STEP_STATE:
            return name
        slot, _, target = name.partition(".")
        return f"{slot}.{self.ckpt_names.get(target, target)}"

    def _read_optimizer_state(self, opt: Any) -> tuple[list[dict[str, str]], dict[str, Any]]:
        """Read and check the saved state of reloaded, still-trainable parameters; say why the rest is
        dropped.

        Returns the report rows and the tensors to load into ``opt``; raises TransferError (changing nothing)
        when an entry that should be loaded cannot be read.
        """
        import mindspore as ms

        keep = set(self.reloaded) & set(self.trainable)
        rows, to_load, problems = [], {}, []
        for _, param in opt.parameters_and_names():
            name = param.name
            if name in self._params:  # the network's own parameters, held by reference
                continue
            target = name.partition(".")[2]
            ck = self._state_ck_name(name)
            shape = tuple(int(d) for d in param.shape)
            if name in STEP_STATE:
                if ck not in self.checkpoint_shapes:
                    reason = "not in checkpoint"
                elif self.checkpoint_shapes[ck] != shape:
                    reason = (f"shape mismatch: checkpoint {_fmt_shape(self.checkpoint_shapes[ck])} "
                              f"vs optimizer {_fmt_shape(shape)}")
                else:
                    reason = ""
            elif target in self._params:
                if target not in keep:
                    reason = f"{target} is {'re-initialised' if target not in self._reload else 'frozen'}"
                    if self.status[target] == SHAPE_MISMATCH:
                        reason = f"{target} is reshaped (shape mismatch)"
                elif self.checkpoint_shapes.get(ck) != shape:
                    reason = "not in checkpoint" if ck not in self.checkpoint_shapes else "shape mismatch"
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
            try:
                tensor = self.source.tensor(ck)
            except Exception as exc:
                problems.append(f"{ck}: cannot read from checkpoint ({exc})")
                continue
            if tuple(tensor.shape) != shape:  # the file disagrees with its own index
                problems.append(f"{ck}: read shape {_fmt_shape(tuple(tensor.shape))} vs {_fmt_shape(shape)}")
                continue
            if tensor.dtype != param.dtype:
                if _dtype_kind(tensor.dtype) != _dtype_kind(param.dtype):
                    rows.append({"name": name, "action": "dropped",
                                 "reason": f"dtype {tensor.dtype} cannot become {param.dtype}"})
                    continue
                tensor = tensor.astype(param.dtype)
            to_load[name] = ms.Parameter(tensor, name=name, requires_grad=False)
            rows.append({"name": name, "action": "loaded", "reason": ""})
        if problems:
            raise TransferError("nothing was loaded; optimizer state: " + "; ".join(problems))
        if not any(r["action"] == "loaded" and r["name"] not in STEP_STATE for r in rows):
            # no moment survives: carrying the step (Adam's beta powers) over would skew bias correction
            for r in rows:
                if r["name"] in STEP_STATE and r["action"] == "loaded":
                    r.update(action="dropped", reason="no parameter state carried over: the step restarts")
                    to_load.pop(r["name"], None)
        listed = {self._state_ck_name(r["name"]) for r in rows}
        weights = set(self.ckpt_names.values())
        for ck in self.checkpoint_shapes:
            target = self.prefix_map.to_network(ck.partition(".")[2])
            if (
                ck not in listed
                and ck not in weights
                and target in self._params
                and (target not in self.trainable_capable or target in self._frozen)
            ):
                rows.append({"name": ck, "action": "dropped", "reason": f"{target} is frozen"})
        return rows, to_load


__all__ = ["STATUS_LABELS", "PatternError", "PlanWarning", "TransferError", "TransferPlan"]


def _group_decays(optimizer: Any, groups: list[dict[str, Any]]) -> list[float | str]:
    """Each group's weight decay as the built optimizer applies it (a group without its own takes the
    optimizer's), so a table of the groups shows a number, never NaN ("optimizer's" if it cannot be read).
    MindSpore keeps one value per parameter (``group_weight_decay``), the groups' parameters in order."""
    decays = getattr(optimizer, "group_weight_decay", None)
    sizes = [len(g["names"]) for g in groups]
    if isinstance(decays, list | tuple) and len(decays) == sum(sizes):
        try:
            starts = [sum(sizes[:i]) for i in range(len(sizes))]
            return [float(decays[start]) for start in starts]
        except (TypeError, ValueError, IndexError):
            pass
    return [g.get("weight_decay", "optimizer's") for g in groups]
