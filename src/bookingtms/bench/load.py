"""`bookingtms bench run`: open-loop HTTP load and its report. (Being built: issue 5.)"""

from __future__ import annotations


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("run", help="drive the HTTP API with an open-loop load and write a report")
    parser.set_defaults(func=run)


def run(args) -> int:
    raise SystemExit("bench run is not built yet")
