"""`bookingtms bench seed`: generates the enterprise data set with COPY. (Being built: issue 5.)"""

from __future__ import annotations


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("seed", help="generate scale data with COPY")
    parser.add_argument("--profile", default="small")
    parser.set_defaults(func=run)


def run(args) -> int:
    raise SystemExit("bench seed is not built yet")
