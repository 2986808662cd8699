"""`python -m bench [--quick] [--runs N] [--only SECTION] [--baseline REF]`: print the table.

``--baseline REF`` also runs every section against the source of commit REF
(exported under bench/out, run with this venv), in the same session, so the
two columns share the machine's mood."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import pypdf

from bench import run
from bench.sections import OPTIONAL_SECTIONS, SECTIONS

RUNNABLE = {**SECTIONS, **OPTIONAL_SECTIONS}  # a default run leaves the optional ones out

OUT = Path(__file__).resolve().parent / "out"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--only", choices=sorted(RUNNABLE), action="append",
                        help="run only this section (repeatable)")
    parser.add_argument("--baseline", metavar="REF",
                        help="also measure commit REF, side by side")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    print(f"openkb benchmark: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"pypdf {pypdf.__version__}, {'quick' if args.quick else f'median of {args.runs}'}")
    baseline = run.checkout(args.baseline, OUT) if args.baseline else None
    for tree in (run.ROOT, baseline):
        if tree is not None:
            run.compile_bytecode(tree)
    rows: list[tuple[str, ...]] = []
    for name in args.only or list(SECTIONS):
        start = time.perf_counter()
        section_rows = RUNNABLE[name](OUT, args.runs, args.quick)
        if baseline is not None:
            run.use_source(baseline)
            old = {metric: value for metric, value, _ in RUNNABLE[name](OUT, args.runs,
                                                                        args.quick)}
            run.use_source(run.ROOT)
            section_rows = [(m, old.get(m, "-"), v, t) for m, v, t in section_rows]
        rows += section_rows
        print(f"  ({name}: {time.perf_counter() - start:.0f} s)", flush=True)
    header = ("metric", f"baseline {args.baseline}", "this tree", "target") if baseline \
        else ("metric", "value", "target")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("\n| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    (OUT / "last.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
