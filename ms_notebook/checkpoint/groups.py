"""Sort checkpoint entries into weights, optimizer state and extra (append_dict) values.

Names checked by saving real MindSpore 2.10 optimizers after a training step:

- Momentum, FTRL: ``moments.*`` (FTRL also ``linear.*``)
- Adam, LazyAdam, AdaMax: ``moment1.*``, ``moment2.*``, ``beta1_power``, ``beta2_power``
- AdamWeightDecay: ``adam_m.*``, ``adam_v.*``; SGD: ``accum.*``, ``stat.*``
- RMSProp: ``mean_square.*``, ``moment.*``; Adagrad, ProximalAdagrad: ``accum.*``
- Adadelta: ``accum.*``, ``accum_update.*``; Rprop: ``prev.*``, ``step_size.*``
- ASGD: ``mu_*``, ``eta_*``, ``ax_.*``
- all: ``global_step``, ``learning_rate``; Momentum and SGD also ``momentum``.

``append_dict`` values are written after everything else.
"""

from __future__ import annotations

from collections.abc import Sequence

WEIGHTS = "weights"
OPTIMIZER = "optimizer"
EXTRA = "extra"

OPTIMIZER_SCALARS = frozenset(
    {"global_step", "learning_rate", "momentum", "beta1_power", "beta2_power", "weight_decay", "loss_scale"}
)
# prefixes that only optimizers use: state, whatever follows
STRONG_PREFIXES = (
    "moments.",
    "moment1.",
    "moment2.",
    "adam_m.",
    "adam_v.",
    "accum.",
    "accum_update.",
    "mean_square.",
    "ax_.",
)
# prefixes that could also be a layer's name: optimizer state only when the rest names another entry
WEAK_PREFIXES = (
    "moment.",
    "stat.",
    "linear.",
    "prev.",
    "step_size.",
    "mu_",
    "eta_",
    "vhat.",
    "exp_avg.",
    "exp_avg_sq.",
)
EXTRA_NAMES = frozenset(
    {"epoch_num", "step_num", "cur_epoch_num", "cur_step_num", "batch_num", "epoch", "step"}
)


def classify(
    names: Sequence[str], kinds: Sequence[str], ndims: Sequence[int], in_save_order: bool = True
) -> list[str]:
    """The group of each entry, given names, kinds (tensor/str/maptensor) and number of dims in file order.

    ``in_save_order`` is False for safetensors files (sorted, not in save order): there every scalar that is
    not optimizer state counts as extra, since the append_dict values cannot be told apart by position.
    """
    known = set(names)
    groups = []
    for name in names:
        if name in OPTIMIZER_SCALARS or name.startswith(STRONG_PREFIXES):
            groups.append(OPTIMIZER)
            continue
        if name.startswith(WEAK_PREFIXES):
            weak = next(p for p in WEAK_PREFIXES if name.startswith(p))
            if name[len(weak) :] in known:
                groups.append(OPTIMIZER)
                continue
        groups.append(EXTRA if name in EXTRA_NAMES else WEIGHTS)
    if not in_save_order:
        for i, (kind, ndim) in enumerate(zip(kinds, ndims, strict=True)):
            if groups[i] == WEIGHTS and kind == "tensor" and ndim == 0:
                groups[i] = EXTRA
    # append_dict values come last: a trailing run of strings and scalars is extra
    for i in range(len(names) - 1, -1, -1):
        if groups[i] == OPTIMIZER:
            break
        if kinds[i] == "str" or (kinds[i] == "tensor" and ndims[i] == 0):
            groups[i] = EXTRA
        else:
            break
    for i, kind in enumerate(kinds):
        if kind == "str":
            groups[i] = EXTRA
    return groups
