"""Render a TransferPlan as plain MindSpore code (no ms_notebook imports): what the widget did."""

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


def render(
    plan: Any, net_name: str = "net", checkpoint: str | None = None, optimizer: str | None = None
) -> str:
    """The code: load by exact name, requires_grad loop, BN statistics, optimizer over trainable params.

    ``checkpoint`` is a Python expression for the checkpoint (defaults to the plan's file path, or
    ``param_dict`` when the plan was built from a dict); ``optimizer`` an expression over ``params`` such as
    ``"nn.Momentum(params, learning_rate=0.01, momentum=0.9)"`` (without it, the optimizer part is a comment).
    """
    net = net_name
    if checkpoint is None:
        checkpoint = (
            "param_dict" if plan.source.is_dict or plan.source.path is None else repr(plan.source.path)
        )
    from_dict = checkpoint == "param_dict" or plan.source.is_dict
    lines = ["import mindspore as ms", "from mindspore import nn", ""]
    lines += _list("RELOAD", plan.reloaded, "Tensors reloaded from the checkpoint, by exact name.")
    lines += _list("FROZEN", plan.frozen, "Parameters that stay fixed (requires_grad=False).")
    lines += _list(
        "FROZEN_BN", plan.frozen_batchnorm(), "BatchNorm cells whose moving statistics stay fixed."
    )
    lines.append("")
    lines.append("# 1. Give the network only the selected tensors: never optimizer entries (moments.*).")
    if from_dict:
        lines.append(f"checkpoint = {checkpoint}")
    else:
        lines.append(f"checkpoint = ms.load_checkpoint({checkpoint})  # reads the whole file in any case")
    lines.append("weights = {name: checkpoint[name] for name in RELOAD}")
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
    opt_lines = [
        "# 4. The optimizer over the trainable parameters only, then its saved state (moments, step) for the",
        "#    reloaded parameters that still train; state of new or reshaped parameters is dropped.",
        f"optimizer = {optimizer or 'nn.Momentum(params, learning_rate=0.01, momentum=0.9)'}",
    ]
    body = [
        f"params = {net}.trainable_params()",
        opt_lines[-1].replace("optimizer = ", "optimizer = "),
        f"STEP_STATE = {STEP_STATE!r}",
        f"KEEP_STATE = {keep!r}",
        "state_names = [",
        "    p.name for _, p in optimizer.parameters_and_names()",
        "    if p.name not in all_names and (p.name in STEP_STATE or p.name.partition('.')[2] in KEEP_STATE)",
        "]",
    ]
    body += [
        "opt_params = dict(optimizer.parameters_and_names())",
        "state = {",
        "    name: checkpoint[name] for name in state_names",
        "    if name in checkpoint and tuple(checkpoint[name].shape) == tuple(opt_params[name].shape)",
        "}",
        "if all(name in STEP_STATE for name in state):  # no moment survives: restart the step count too",
        "    state = {}",
        "ms.load_param_into_net(optimizer, state, strict_load=True)",
    ]
    lines += opt_lines[:2]
    if optimizer:
        lines += body
    else:
        lines.append("# (pass optimizer='nn.Adam(params, 1e-3)' to to_code() to write this part out)")
        lines += ["# " + line for line in body]
    return "\n".join(lines) + "\n"
