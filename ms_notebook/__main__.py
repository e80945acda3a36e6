"""``python -m ms_notebook`` / ``ms-notebook``: a small dispatcher for command-line tools.

Each subcommand registers a parser and a handler; add new ones to ``_COMMANDS``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="print what a .ckpt or .safetensors file holds, without loading it")
    p.add_argument(
        "path", help="checkpoint file (.ckpt or .safetensors; detected from the content) or URL (https://, s3://)"
    )
    p.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="for a URL: an fsspec storage option (VALUE as JSON if it parses), e.g. "
        '\'client_kwargs={"endpoint_url": "http://127.0.0.1:9000"}\'; credentials best from the environment',
    )
    p.add_argument("--depth", type=int, default=None, help="levels of the name tree to show (default: all)")
    p.add_argument("--group", choices=["weights", "optimizer", "extra"], help="only entries of this group")
    p.add_argument(
        "--filter",
        metavar="TEXT",
        help="only names matching TEXT: substring, glob '*.weight', segment '/bn/', '/regex/' or 're:regex'",
    )
    p.add_argument("--json", action="store_true", help="print the tree as JSON instead of text")
    p.add_argument("--verify", action="store_true", help="also check the crc written with crc_check=True")
    _add_set_options(p)
    p.set_defaults(handler=_inspect)


def _add_set_options(p: argparse.ArgumentParser) -> None:
    """Options for a folder of rank_N/ files (see open_checkpoint)."""
    p.add_argument("--strategy", help="the parallel strategy file of a rank folder (default: found in it)")
    p.add_argument("--step", help="pick each rank folder's file ending with this step, e.g. 2_100")
    p.add_argument("--file", help="pick this file name in each rank folder")


def _open(args: argparse.Namespace):
    from .checkpoint import open_checkpoint

    sets = {"strategy": args.strategy, "step": args.step, "file": args.file}
    options = {}
    for item in getattr(args, "storage_option", None) or []:
        key, _, value = item.partition("=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    if options:
        sets["storage_options"] = options
    return open_checkpoint(args.path, **{k: v for k, v in sets.items() if v is not None})


def _inspect(args: argparse.Namespace) -> int:
    from .checkpoint.sets import describe_set

    ck = _open(args)
    if args.verify:
        ck.verify()
    if args.filter:
        return _inspect_filtered(ck, args)
    if args.json:
        out = {
            "path": ck.path,
            "format": ck.format,
            "file_size": ck.file_size,
            "num_params": ck.num_params,
            "tree": ck.tree(args.group).to_dict(args.depth),
            "set": describe_set(ck),
            "remote": ck.remote,
        }
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(ck.summary(depth=args.depth, group=args.group))
        if ck.remote is not None:
            r = ck.remote
            cost = f"{r['requests']} requests, {r['bytes']:,} bytes, {r['wall_s']:.2f} s"
            print(f"\nlisted from {r['url']} with {cost}")
        if args.verify:
            print("\ncrc: ok")
    return 0


def _inspect_filtered(ck, args: argparse.Namespace) -> int:
    """The tree of the entries whose names match ``--filter`` (the syntax every view shares)."""
    from .checkpoint.filters import FilterError, select
    from .checkpoint.tree import build_tree, render

    try:
        entries = select(ck.entries, args.filter)
    except FilterError as exc:
        print(f"ms-notebook inspect: error: --filter: {exc}", file=sys.stderr)
        return 2
    if args.group:
        entries = [e for e in entries if e.group == args.group]
    root = build_tree(entries)
    if args.json:
        out = {"path": ck.path, "filter": args.filter, "matches": len(entries),
               "tree": root.to_dict(args.depth)}
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print(f"{len(entries)} of {len(ck)} tensors in {os.path.basename(ck.path)} match {args.filter!r}")
    if entries:
        print()
        print("\n".join(render(root, args.depth)))
    if args.verify:
        print("\ncrc: ok")
    return 0


def _add_merge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="write a checkpoint set as one checkpoint with MindSpore's own tools")
    p.add_argument("path", help="a set: folder of rank_N/ files, folder or index of shards")
    p.add_argument("dst", help="the checkpoint to write (a folder for --format unified)")
    p.add_argument("--format", choices=["ckpt", "safetensors", "unified"], help="default: the set's format")
    p.add_argument("--overwrite", action="store_true", help="replace dst if it exists")
    _add_set_options(p)
    p.set_defaults(handler=_merge)


def _merge(args: argparse.Namespace) -> int:
    from ms_notebook.checkpoint.sets import CheckpointSet
    from ms_notebook.transfer.merge import merge

    ck = _open(args)
    if not isinstance(ck, CheckpointSet):
        print(f"ms-notebook merge: error: {args.path} is one file, not a set", file=sys.stderr)
        return 1
    merged = merge(ck, args.dst, format=args.format, overwrite=args.overwrite)
    print(f"wrote {merged.path} ({merged.format}, {len(merged)} tensors)")
    return 0


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_inspect, _add_merge]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; errors about files print one line and exit with 1."""
    parser = argparse.ArgumentParser(prog="ms-notebook", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(sub)
    args = parser.parse_args(argv)
    from .checkpoint import CheckpointError

    try:
        return args.handler(args)
    except (CheckpointError, OSError) as exc:
        print(f"ms-notebook {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `| head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
