"""Executors side by side: process, thread and dask (a LocalCluster of two
workers), two jobs each, on the shared PDF samples (CPU-bound conversion)
and on the generated Markdown corpus (many small files: per-task overhead)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bench import corpus
from bench.run import add, fresh_kb, median

EXECUTORS = ("process", "thread", "dask")
Row = tuple[str, str, str]


def _inputs(out: Path, shared: Path, quick: bool) -> dict[str, list[Path]]:
    sets: dict[str, list[Path]] = {}
    pdfs = shared / "pdf-sample-files"
    if pdfs.is_dir():
        sets["PDF samples"] = [pdfs]
    count = 200 if quick else 1_000
    sets[f"{count} generated docs"] = [corpus.generate(out / f"gen-exec-{count}", count,
                                                       seed=13)]
    return sets


def executors(out: Path, runs: int, quick: bool, shared: Path) -> list[Row]:
    names = [e for e in EXECUTORS
             if e != "dask" or importlib.util.find_spec("distributed") is not None]
    rows: list[Row] = []
    if "dask" not in names:
        rows.append(("dask executor", "distributed not installed: skipped", ""))
    for label, inputs in _inputs(out, shared, quick).items():
        walls: dict[str, list[float]] = {name: [] for name in names}
        startups: dict[str, list[float]] = {name: [] for name in names}
        files = 0
        for _ in range(1 if quick else runs):
            for name in names:
                kb = fresh_kb(out / f"kb-exec-{name}", f"executor: {name}\n")
                result = add(kb, inputs, jobs=2, jsonl=out / "exec.jsonl")
                walls[name].append(result.wall_s)
                startups[name] += [e["startup_ms"] / 1000 for e in result.events
                                   if e.get("event") == "executor"]
                files = (result.terminal or {}).get("counts", {}).get("total", 0)
        # Overhead per file: the wall beyond the process executor's, less
        # the executor's start-up (paid once per run, not per file).
        base = median(walls["process"]) - median(startups["process"])
        for name in names:
            wall, startup = median(walls[name]), median(startups[name])
            per_file_ms = (wall - startup - base) / max(files, 1) * 1000
            rows.append((f"{label} ({files} files), jobs 2, {name}",
                         f"{wall:.2f} s wall, start-up {startup:.2f} s, "
                         f"{per_file_ms:+.1f} ms/file vs process", ""))
    return rows
