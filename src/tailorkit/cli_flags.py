"""Flags that several `tailor` commands share, so they read the same everywhere."""

from __future__ import annotations

import argparse


def add_trust(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow a run whose recipe sets model.trust_remote_code to run the code in "
                             "its model folder (only for runs from people you trust)")


def add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help="override a recipe field, e.g. --set train.lr=3e-5 (repeatable)")
