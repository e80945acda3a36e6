"""``python -m ms_notebook.demo prepare [--rebuild]``: build the demo checkpoint if needed, print its path."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ms_notebook.demo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    prepare = sub.add_parser("prepare", help="build the pretrained demo checkpoint and print its path")
    prepare.add_argument("--rebuild", action="store_true", help="train again even if a cached file exists")
    sub.add_parser("path", help="print where the checkpoint is cached (without building it)")
    args = parser.parse_args(argv)

    from .pretrained import checkpoint_path, pretrained_checkpoint

    if args.command == "path":
        print(checkpoint_path())
        return 0
    print(pretrained_checkpoint(rebuild=args.rebuild, verbose=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
