"""Sort checkpoint entries into weights, optimizer state and extra (append_dict) values.

The rule is the optimizer's relationship to the weights, the same for ``.ckpt`` and ``.safetensors`` (whose
files are not in save order):

- **state of a parameter**: ``P.W`` where ``W`` is another entry of the same shape is optimizer state when
  ``P`` is a prefix an optimizer uses (below), or when every entry under ``P`` is such a copy of a weight
  (an unknown optimizer's ``P.*``). A known prefix also accepts the shapes its optimizer gives per-parameter
  state (``()``, ``(1,)``, AdaFactor's factored rows ``W[:-1]`` and columns ``W[:-2] + W[-1:]``), and the
  strongest of them mark state even when the weight itself was not saved. ASGD and AdaFactor glue the
  prefix to the name without a dot (``mu_conv.weight``, ``exp_avg_sq_row_fc.weight``).
- **optimizer scalars by name**: step counters, learning rates, betas, loss scale, EMA bookkeeping.
- **extra**: strings, the names ``save_checkpoint``'s callbacks append, and 0-d values that are not weights;
  a 0-d value is a weight when it is inside a module (a dotted name), has optimizer state, or is a known
  0-d parameter such as CLIP's ``logit_scale``.

Names checked by saving each optimizer of MindSpore 2.10 after a real training step (``mindspore.nn``:
Momentum, SGD, Adam, LazyAdam, AdaMax, AdamWeightDecay, AdamOffload, RMSProp (centered too), Adagrad,
ProximalAdagrad, Adadelta, Rprop, ASGD, FTRL, AdaFactor; Lamb and LARS without a step (no CPU kernels);
``mindspore.experimental.optim``: SGD, Adam, AdamW (amsgrad), Adamax, NAdam, RAdam, RMSprop, Rprop, Adagrad,
Adadelta, ASGD) and of mindcv 0.3 (Lion, NAdam, Adan, AdamW, Lamb, RMSProp, Adagrad, Momentum, Nesterov,
``TrainStep`` with EMA and loss scale).
"""

from __future__ import annotations

from collections.abc import Sequence

WEIGHTS = "weights"
OPTIMIZER = "optimizer"
EXTRA = "extra"

# per-parameter state saved as ``<prefix>.<parameter name>``; the strong ones are never a layer's name
STRONG_PREFIXES = frozenset(
    {
        "moments", "moment1", "moment2", "moment3", "adam_m", "adam_v", "accum", "accum_update",
        "mean_square", "mean_grad", "lamb_m", "lamb_v", "lion_m", "nadam_m", "nadam_v", "prev_gradient",
        "exp_avg_sq", "max_exp_avg_sq", "exp_inf", "accu_grads", "ax_",
    }
)  # fmt: skip
WEAK_PREFIXES = frozenset({"moment", "stat", "linear", "prev", "step_size", "exp_avg", "ax", "ema", "vhat"})
# state glued to the parameter name: ASGD (mu_, eta_), AdaFactor (exp_avg_sq_row_/col_, exp_avg_sq_)
GLUED_PREFIXES = ("exp_avg_sq_row_", "exp_avg_sq_col_", "exp_avg_sq_", "mu_", "eta_")
OPTIMIZER_NAMES = frozenset(
    {
        "global_step", "learning_rate", "momentum", "beta1_power", "beta2_power", "weight_decay",
        "loss_scale", "scale_sense", "current_iterator_step", "last_overflow_iterator_step",
        "afactor_step", "state_step", "step_t", "mu_schedule", "updates", "fake_lr", "fake_param",
    }
)  # fmt: skip
EXTRA_NAMES = frozenset(
    {"epoch_num", "step_num", "cur_epoch_num", "cur_step_num", "batch_num", "epoch", "step"}
)
SCALAR_WEIGHTS = frozenset({"logit_scale", "logit_bias", "temperature"})
_KNOWN = STRONG_PREFIXES | WEAK_PREFIXES


def _fits(state: tuple[int, ...], weight: tuple[int, ...], known: bool) -> bool:
    """Whether ``state`` can be an optimizer's state of a parameter shaped ``weight``."""
    if state == weight:
        return True
    if not known:
        return False
    return state in ((), (1,)) or state == weight[:-1] or state == weight[:-2] + weight[-1:]


def classify(
    names: Sequence[str],
    kinds: Sequence[str],
    shapes: Sequence[tuple[int, ...]],
    in_save_order: bool = True,
) -> list[str]:
    """The group of each entry, given names, kinds (tensor/str/maptensor) and shapes.

    Linear in the number of entries and in name length. ``in_save_order`` is accepted for callers of the
    older signature and ignored: the answer never depends on the order of the file.
    """
    del in_save_order
    if len(names) != len(shapes) or len(names) != len(kinds):
        raise ValueError("names, kinds and shapes differ in length")
    shape_of: dict[str, tuple[int, ...]] | None = None  # name -> shape, made for the first name screened in
    groups: list[str | None] = [None] * len(names)
    has_state: set[str] = set()
    tentative: dict[int, tuple[str, str]] = {}  # index -> (unknown prefix, weight) of a same-shape copy
    copies: dict[str, int] = {}  # unknown prefix -> entries under it that copy a weight
    # a weight ``W`` of ``P.W`` begins with the first label of an entry: a second label outside these (and
    # not a known prefix) rules out every rule below but the by-name and glued ones
    second_labels = {name.partition(".")[0] for name in names} | _KNOWN
    quiet: dict[str, bool] = {}  # first label -> neither a known prefix nor glued state (no dot in those)
    for i, (name, kind, shape) in enumerate(zip(names, kinds, shapes, strict=True)):
        if kind == "str":
            continue
        if name not in OPTIMIZER_NAMES:
            # the quick screen: most names have no rule that can apply, and are weights or extra below
            head, dot_, rest = name.partition(".")
            if not dot_ or not head:
                if not name.startswith(GLUED_PREFIXES):
                    continue
            else:
                calm = quiet.get(head)
                if calm is None:
                    calm = quiet[head] = head not in _KNOWN and not head.startswith(GLUED_PREFIXES)
                if (
                    calm
                    and rest.partition(".")[0] not in second_labels
                    and (len(shape) > 1 or name[name.rfind(".") + 1 :] not in OPTIMIZER_NAMES)
                ):
                    continue
        if shape_of is None:
            shape_of = dict(zip(names, shapes, strict=True))
        if name in OPTIMIZER_NAMES:
            groups[i] = OPTIMIZER
            continue
        dot = name.find(".")
        if dot > 0 and len(shape) <= 1 and name.rpartition(".")[2] in OPTIMIZER_NAMES:
            groups[i] = OPTIMIZER
            continue
        if name.startswith(GLUED_PREFIXES):
            glued = next(p for p in GLUED_PREFIXES if name.startswith(p))
            weight = name[len(glued) :]
            if weight in shape_of and _fits(shape, shape_of[weight], known=True):
                groups[i] = OPTIMIZER
                has_state.add(weight)
                continue
        if dot <= 0:
            continue
        prefix, weight = name[:dot], name[dot + 1 :]
        known = prefix in _KNOWN
        if weight in shape_of and _fits(shape, shape_of[weight], known):
            if known:
                groups[i] = OPTIMIZER
                has_state.add(weight)
            else:
                tentative[i] = (prefix, weight)
                copies[prefix] = copies.get(prefix, 0) + 1
            continue
        if known and prefix in STRONG_PREFIXES:
            groups[i] = OPTIMIZER  # the state of a parameter that was not saved
            continue
        second = name.find(".", dot + 1)
        if second > 0 and name[dot + 1 : second] in _KNOWN:
            # a container around the optimizer: ``opt.exp_avg.W`` next to ``opt.W``
            container = prefix + name[second:]
            if container in shape_of and _fits(shape, shape_of[container], True):
                groups[i] = OPTIMIZER
                has_state.add(container)
    if copies:  # an unknown prefix is state only when everything under it copies a weight
        under: dict[str, int] = {}  # entries under each such prefix not already told apart by name
        for i, name in enumerate(names):
            if groups[i] is not None or kinds[i] == "str":
                continue
            dot = name.find(".")
            if dot > 0:
                prefix = name[:dot]
                if prefix in copies:
                    under[prefix] = under.get(prefix, 0) + 1
        for i, (prefix, weight) in tentative.items():
            if groups[i] is None and copies[prefix] == under[prefix]:
                groups[i] = OPTIMIZER
                has_state.add(weight)
    out: list[str] = []
    append = out.append
    for group, name, kind, shape in zip(groups, names, kinds, shapes, strict=True):
        if group is None:
            if kind == "str" or name in EXTRA_NAMES:
                group = EXTRA
            elif kind == "tensor" and not shape:
                scalar_weight = "." in name or name in has_state or name in SCALAR_WEIGHTS
                group = WEIGHTS if scalar_weight else EXTRA
            else:
                group = WEIGHTS
        append(group)
    return out
