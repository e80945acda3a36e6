"""``python -m ms_notebook`` / ``ms-notebook``: a small dispatcher for command-line tools.

Each subcommand registers a parser and a handler; add new ones to ``_COMMANDS``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="print what a .ckpt or .safetensors file holds, without loading it")
    p.add_argument("path", help="checkpoint file (.ckpt or .safetensors; detected from the content)")
    p.add_argument("--depth", type=int, default=None, help="levels of the name tree to show (default: all)")
    p.add_argument("--group", choices=["weights", "optimizer", "extra"], help="only entries of this group")
    p.add_argument("--json", action="store_true", help="print the tree as JSON instead of text")
    p.add_argument("--verify", action="store_true", help="also check the crc written with crc_check=True")
    p.set_defaults(handler=_inspect)


def _inspect(args: argparse.Namespace) -> int:
    from .checkpoint import open_checkpoint

    ck = open_checkpoint(args.path)
    if args.verify:
        ck.verify()
    if args.json:
        out = {
            "path": ck.path,
            "format": ck.format,
            "file_size": ck.file_size,
            "num_params": ck.num_params,
            "tree": ck.tree(args.group).to_dict(args.depth),
        }
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(ck.summary(depth=args.depth, group=args.group))
        if args.verify:
            print("\ncrc: ok")
    return 0


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_inspect]


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
