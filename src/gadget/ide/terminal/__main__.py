"""`python -m gadget.ide.terminal ARGS`: `gadget chat ARGS` without importing the rest of `gadget`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gadget.ide.terminal.cli import add_chat_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags of `gadget chat` and run it."""
    parser = argparse.ArgumentParser(prog="gadget")
    add_chat_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["chat", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
