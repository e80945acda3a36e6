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


STYLES = ("model", "functional")
DEFAULT_OPTIMIZER = "nn.Momentum(params, learning_rate=0.01, momentum=0.9)"
DEFAULT_LOSS = 'nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")'


def functional_loop_lines(net: str, loss: str, epochs: int, jit: bool = True, reducer: bool = False,
                          curves: str = "LiveCurves(epochs=EPOCHS)", checkpoints: bool = False) -> list[str]:
    """MindSpore 2.x's own training loop (its quick start and transfer-learning tutorial): ``value_and_grad``
    over the optimizer's parameters, a ``train_step``, and the epochs logged with ``LiveCurves``.

    Expects ``optimizer``, ``train_dataset`` and ``eval_dataset`` (or None) to be defined. ``reducer`` adds
    ``nn.DistributedGradReducer`` (data parallel); ``checkpoints`` saves last/best after each epoch."""
    lines = [
        "# 5. MindSpore 2.x's training loop: gradients of the optimizer's (trainable) parameters only.",
        f"loss_fn = {loss}",
        f"EPOCHS = {int(epochs)}",
        "",
        "",
        "def forward_fn(data, label):",
        f"    logits = {net}(data)",
        "    return loss_fn(logits, label), logits",
        "",
        "",
        "grad_fn = ms.value_and_grad(forward_fn, None, optimizer.parameters, has_aux=True)",
    ]
    if reducer:
        lines += [
            "# average the gradients over the ranks (mean and degree come from the parallel context)",
            "grad_reducer = nn.DistributedGradReducer(optimizer.parameters)",
        ]
    lines += ["", ""]
    if jit:
        lines.append("@ms.jit")
    lines += [
        "def train_step(data, label):",
        "    (loss, _), grads = grad_fn(data, label)",
    ]
    if reducer:
        lines.append("    grads = grad_reducer(grads)")
    lines += [
        "    optimizer(grads)",
        "    return loss",
        "",
        "",
        "def evaluate(dataset):",
        '    """Mean loss and accuracy over a dataset (the tutorials\' test loop)."""',
        f"    {net}.set_train(False)",
        "    batches, loss_sum, correct, total = 0, 0.0, 0, 0",
        "    for data, label in dataset.create_tuple_iterator():",
        f"        logits = {net}(data)",
        "        loss_sum += float(loss_fn(logits, label).asnumpy())",
        "        correct += int((logits.argmax(1) == label).asnumpy().sum())",
        "        batches, total = batches + 1, total + label.shape[0]",
        f"    {net}.set_train(True)",
        '    return {"eval_loss": loss_sum / max(batches, 1), "accuracy": correct / max(total, 1)}',
        "",
        "",
        "# LiveCurves draws the curves live; its Stop button (or the kernel's interrupt) ends the loop after",
        "# the current step, and the history and figure are kept.",
        f"with {curves} as curves:",
        "    for epoch in range(EPOCHS):",
        f"        {net}.set_train()",
        "        for data, label in curves.steps(train_dataset.create_tuple_iterator()):",
        "            curves.log(loss=train_step(data, label))",
        "        if curves.stop_requested:",
        "            break",
        "        curves.log_epoch(**(evaluate(eval_dataset) if eval_dataset is not None else {}))",
    ]
    if checkpoints:
        lines.append(f"        curves.save_checkpoint({net})  # last.ckpt; best.ckpt when accuracy improved")
    return lines


def _demo_data_lines(plan: Any, batch_size: int = 16) -> list[str] | None:
    """The demo's digits datasets, when the plan's network is the demo's DigitsNet."""
    from ms_notebook.demo.network import DigitsNet

    tasks = {5: "transfer", 10: "pretrain"}
    if type(plan.net) is not DigitsNet or plan.net.num_classes not in tasks:
        return None
    return [
        "from ms_notebook import demo",
        "",
        f"train_factory, eval_factory = demo.datasets({tasks[plan.net.num_classes]!r}, "
        f"batch_size={batch_size})",
        "train_dataset, eval_dataset = train_factory(), eval_factory()",
    ]


def render(
    plan: Any,
    net_name: str = "net",
    checkpoint: str | None = None,
    optimizer: str | None = None,
    lr: Any = None,
    style: str = "model",
    epochs: int = 3,
    loss: str | None = None,
    jit: bool = True,
) -> str:
    """The code: load by exact name, requires_grad loop, BN statistics, optimizer over trainable params.

    ``checkpoint`` is a Python expression for the checkpoint (defaults to the plan's file path, or
    ``param_dict`` when the plan was built from a dict); ``optimizer`` an expression over ``params`` such as
    ``"nn.Momentum(params, learning_rate=0.01, momentum=0.9)"`` (without it, the optimizer part is a comment);
    ``lr`` (a number or ``slice(lo, hi)``) makes ``params`` parameter groups with one rate per block, as
    ``apply(lr=...)`` does. A prefix map and a ``.safetensors`` source are written out too.

    ``style="functional"`` goes on with MindSpore 2.x's own loop (``value_and_grad``, ``train_step``, the
    epochs logged with ``LiveCurves``; ``loss`` and ``epochs`` set it up, ``jit`` compiles the step): the
    code then expects ``train_dataset`` and ``eval_dataset`` (filled in for the demo's network).
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if style == "functional" and optimizer is None:
        optimizer = DEFAULT_OPTIMIZER
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
    opt_expr = optimizer or DEFAULT_OPTIMIZER
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
    if style == "functional":
        lines.append("")
        data = _demo_data_lines(plan)
        if data is None:
            lines.append("# train_dataset and eval_dataset: your MindSpore datasets of (data, label) batches")
        else:
            lines += data
        lines += ["from ms_notebook import LiveCurves", ""]
        lines += functional_loop_lines(net, loss or DEFAULT_LOSS, epochs, jit=jit)
    return "\n".join(lines) + "\n"
