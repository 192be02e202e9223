"""`tailor study FILE` runs a base recipe's variants side by side; `tailor report DIR` writes the
HTML report of a run, a search or a study."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tailorkit.report.html import build_report
from tailorkit.study.plan import load_study
from tailorkit.study.run import read_status, run_study, write_tables


def add_study_commands(sub: argparse._SubParsersAction) -> None:
    """The `study` and `report` commands, on `tailor`'s subparsers."""
    p = sub.add_parser("study", help="run variants of a base recipe side by side (resumes), then "
                                     "write results.md, results.csv and report.html")
    p.add_argument("study_file", help="YAML: base (a recipe file or mapping), variants, seeds, metric")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override a field of the study file, e.g. --set output_dir=runs/s2 (repeatable)")
    p.add_argument("--no-report", action="store_true", help="only the tables, no report.html")

    r = sub.add_parser("report", help="write one self-contained HTML report of a run, search or study")
    r.add_argument("dir", help="a run, search (tailor tune) or study (tailor study) directory")
    r.add_argument("--out", help="the HTML file (default: DIR/report.html)")


def cmd_study(args: argparse.Namespace) -> None:
    cfg = load_study(args.study_file, args.overrides)
    study_dir = run_study(cfg, args.study_file, log=lambda line: print(line, file=sys.stderr))
    print(write_tables(study_dir))
    print(f"\ntables: {study_dir / 'results.md'}, {study_dir / 'results.csv'}")
    if not args.no_report:
        print(f"report: {build_report(study_dir)}")
    if any(s["status"] == "failed" for s in read_status(study_dir).values()):
        raise SystemExit(1)  # the warning above names them; a script must see it too


def cmd_report(args: argparse.Namespace) -> None:
    print(f"report: {build_report(Path(args.dir), args.out)}")


STUDY_COMMANDS = {"study": cmd_study, "report": cmd_report}
