"""`vigil`: one command for everything an operator or developer runs.

vigil up [-f dapr.yaml] [--resources DIR]   start every app with a localdapr sidecar
vigil demo                                  the platform demo (for now: the sample app pair)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from localdapr import cli as localdapr_cli

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vigil", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start every app of a run template with its localdapr sidecar")
    localdapr_cli.add_up_arguments(up)
    up.set_defaults(func=localdapr_cli.run_up)
    demo = sub.add_parser("demo", help="run the demo")
    localdapr_cli.add_up_arguments(demo)
    demo.set_defaults(func=run_demo)
    args = parser.parse_args(argv)
    return int(args.func(args))


def run_demo(args: argparse.Namespace) -> int:
    if args.file == "dapr.yaml":
        args.file = str(REPO / "samples" / "hello" / "dapr.yaml")
    print(f"vigil demo: starting {args.file} (Ctrl-C stops everything)", file=sys.stderr)
    return localdapr_cli.run_up(args)


if __name__ == "__main__":
    raise SystemExit(main())
