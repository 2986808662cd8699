"""`python -m bench [--quick] [--runs N] [--only SECTION]`: print the table."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import pypdf

from bench.sections import SECTIONS

OUT = Path(__file__).resolve().parent / "out"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append",
                        help="run only this section (repeatable)")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    print(f"openkb benchmark: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"pypdf {pypdf.__version__}, {'quick' if args.quick else f'median of {args.runs}'}")
    rows = []
    for name in args.only or list(SECTIONS):
        start = time.perf_counter()
        section_rows = SECTIONS[name](OUT, args.runs, args.quick)
        rows += section_rows
        print(f"  ({name}: {time.perf_counter() - start:.0f} s)", flush=True)
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print(f"\n| {'metric':<{width}} | {'value':<{value_width}} | target |")
    print(f"|{'-' * (width + 2)}|{'-' * (value_width + 2)}|--------|")
    for metric, value, target in rows:
        print(f"| {metric:<{width}} | {value:<{value_width}} | {target} |")
    (OUT / "last.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
