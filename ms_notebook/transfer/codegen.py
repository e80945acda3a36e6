"""Render a TransferPlan as plain MindSpore code (no ms_notebook imports, except ``demo`` to find the
tutorials' checkpoint): what the widget did."""

from __future__ import annotations

from typing import Any

from ms_notebook.transfer.plan import STEP_STATE


def _list(name: str, items: list[str], comment: str) -> list[str]:
    if not items:
        return [f"# {comment}", f"{name} = []"]
    lines = [f"# {comment}", f"{name} = ["]
    lines += [f"    {item!r}," for item in items]
    lines.append("]")
    return lines


def _prefix_lines(mapping: dict[str, str]) -> list[str]:
    return [
        "# The checkpoint names its tensors with another prefix: {checkpoint prefix: network prefix}.",
        f"PREFIX_MAP = {mapping!r}",
        "",
        "",
        "def checkpoint_name(name):",
        '    """The checkpoint\'s name of a network parameter: its longest network prefix, swapped."""',
        "    starts = [(net, ck) for ck, net in PREFIX_MAP.items() if name.startswith(net)]",
        "    if not starts:",
        "        return name",
        "    net, ck = max(starts, key=lambda pair: len(pair[0]))",
        "    return ck + name[len(net):]",
        "",
        "",
        "def state_checkpoint_name(name):",
        '    """The checkpoint\'s name of optimizer state: moments.<parameter> follows the parameter."""',
        "    if name in STEP_STATE:",
        "        return name",
        "    slot, _, target = name.partition('.')",
        "    return f'{slot}.{checkpoint_name(target)}'",
        "",
    ]


def _groups_lines(plan: Any, lr: Any) -> list[str]:
    from ms_notebook.transfer.rates import describe

    groups = plan.lr_groups(lr)
    lines = [
        f"# Discriminative learning rates ({describe(lr)}): one parameter group per block, rates spread",
        "# geometrically from the first block to the last; beta/gamma get no weight decay (as in a list).",
        "PARAM_GROUPS = [",
    ]
    for group in groups:
        extra = "" if "weight_decay" not in group else f", 'weight_decay': {group['weight_decay']!r}"
        lines.append(f"    {{'lr': {group['lr']!r}{extra}, 'names': [  # {group['block']}")
        lines += [f"        {name!r}," for name in group["names"]]
        lines.append("    ]},")
    lines.append("]")
    return lines


def render(
    plan: Any,
    net_name: str = "net",
    checkpoint: str | None = None,
    optimizer: str | None = None,
    lr: Any = None,
) -> str:
    """The code: load by exact name, requires_grad loop, BN statistics, optimizer over trainable params.

    ``checkpoint`` is a Python expression for the checkpoint (defaults to the plan's file path, or
    ``param_dict`` when the plan was built from a dict); ``optimizer`` an expression over ``params`` such as
    ``"nn.Momentum(params, learning_rate=0.01, momentum=0.9)"`` (without it, the optimizer part is a comment);
    ``lr`` (a number or ``slice(lo, hi)``) makes ``params`` parameter groups with one rate per block, as
    ``apply(lr=...)`` does. A prefix map and a ``.safetensors`` source are written out too.
    """
    from ms_notebook.demo.pretrained import DEMO_EXPRESSION, DEMO_IMPORT, code_expression

    net = net_name
    if checkpoint is None:
        checkpoint = (
            "param_dict" if plan.source.is_dict or plan.source.path is None
            else code_expression(plan.source.path) or repr(plan.source.path)
        )
    from_dict = checkpoint == "param_dict" or plan.source.is_dict
    prefix = dict(plan.prefix_map.mapping)
    name_of = "checkpoint_name(name)" if prefix else "name"
    state_of = "state_checkpoint_name(name)" if prefix else "name"
    lines = ["import mindspore as ms", "from mindspore import nn", ""]
    if checkpoint == DEMO_EXPRESSION:  # not this machine's cache folder
        lines.insert(2, DEMO_IMPORT)
    lines += _list("RELOAD", plan.reloaded, "Tensors reloaded from the checkpoint, by exact name.")
    lines += _list("FROZEN", plan.frozen, "Parameters that stay fixed (requires_grad=False).")
    lines += _list(
        "FROZEN_BN", plan.frozen_batchnorm(), "BatchNorm cells whose moving statistics stay fixed."
    )
    lines.append(f"STEP_STATE = {STEP_STATE!r}")
    if prefix:
        lines += _prefix_lines(prefix)
    lines.append("")
    lines.append("# 1. Give the network only the selected tensors: never optimizer entries (moments.*).")
    if from_dict:
        lines.append(f"checkpoint = {checkpoint}")
    elif plan.source.format == "safetensors":
        lines.append(f"checkpoint = ms.load_checkpoint({checkpoint}, format='safetensors')")
    else:
        lines.append(f"checkpoint = ms.load_checkpoint({checkpoint})  # reads the whole file in any case")
    lines.append(f"weights = {{name: checkpoint[{name_of}] for name in RELOAD}}")
    lines += [
        "# strict_load=True: match exact names only. With strict_load=False MindSpore falls back to",
        "# matching name suffixes and can load an optimizer buffer (moments.head.weight) into head.weight.",
        f"param_not_load, ckpt_not_load = ms.load_param_into_net({net}, weights, strict_load=True)",
        f"all_names = {{param.name for param in {net}.get_parameters()}}",
        "assert not ckpt_not_load and set(param_not_load) == all_names - set(RELOAD), 'unexpected load'",
        "",
        "# 2. Freeze BEFORE building the optimizer: an optimizer built earlier keeps updating frozen weights",
        "#    (momentum buffers, weight decay, GRAPH mode).",
        f"for param in {net}.get_parameters():",
        "    if param.name in FROZEN:",
        "        param.requires_grad = False",
        "",
        "# 3. Model.train calls set_train(True) on the whole network, which would make frozen BatchNorm",
        "#    layers update their moving mean/variance again; use_batch_statistics=False keeps them fixed.",
        f"for name, cell in {net}.cells_and_names():",
        "    if name in FROZEN_BN:",
        "        cell.use_batch_statistics = False",
        "",
    ]
    keep = [n for n in plan.reloaded if n in set(plan.trainable)]
    opt_expr = optimizer or "nn.Momentum(params, learning_rate=0.01, momentum=0.9)"
    lines.append(
        "# 4. The optimizer over the trainable parameters only, then its saved state (moments, step) for the"
    )
    lines.append("#    reloaded parameters that still train; state of new or reshaped parameters is dropped.")
    body: list[str] = []
    if lr is not None:
        body += _groups_lines(plan, lr)
        body += [
            f"trainable = {{param.name: param for param in {net}.trainable_params()}}",
            "params = [",
            "    {**{key: value for key, value in group.items() if key != 'names'},",
            "     'params': [trainable[name] for name in group['names']]}",
            "    for group in PARAM_GROUPS",
            "]",
        ]
    else:
        body.append(f"params = {net}.trainable_params()")
    body += [
        f"optimizer = {opt_expr}",
        f"KEEP_STATE = {keep!r}",
        "state_names = [",
        "    p.name for _, p in optimizer.parameters_and_names()",
        "    if p.name not in all_names and (p.name in STEP_STATE or p.name.partition('.')[2] in KEEP_STATE)",
        "]",
        "opt_params = dict(optimizer.parameters_and_names())",
        "state = {",
        f"    name: checkpoint[{state_of}] for name in state_names",
        f"    if {state_of} in checkpoint",
        f"    and tuple(checkpoint[{state_of}].shape) == tuple(opt_params[name].shape)",
        "}",
        "if all(name in STEP_STATE for name in state):  # no moment survives: restart the step count too",
        "    state = {}",
        "ms.load_param_into_net(optimizer, state, strict_load=True)",
    ]
    if optimizer:
        lines += body
    else:
        lines.append("# (pass optimizer='nn.Adam(params, 1e-3)' to to_code() to write this part out)")
        lines += ["# " + line if line else "#" for line in body]
    return "\n".join(lines) + "\n"
