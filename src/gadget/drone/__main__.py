"""`python -m gadget.drone`: the same as `gadget drone` (register included)."""

from __future__ import annotations

import argparse
import sys

from gadget.drone.cli import add_drone_parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` as `gadget drone ...` and run it."""
    parser = argparse.ArgumentParser(prog="python -m gadget.drone")
    add_drone_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["drone", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
