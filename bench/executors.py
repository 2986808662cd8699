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
    return rows + io_bound(out, runs, quick)


def io_bound(out: Path, runs: int, quick: bool) -> list[Row]:
    """An I/O-bound prepare (each task waits 50 ms, as on an LLM call), with
    more jobs than cores: threads wait as well as processes do, without a
    process, its start-up and its memory per job."""
    count, jobs = (100, 8) if quick else (400, 16)
    docs = corpus.generate(out / f"gen-exec-{count}", count, seed=13)
    rows: list[Row] = []
    for name in ("process", "thread"):
        walls, rss = [], []
        for _ in range(1 if quick else runs):
            kb = fresh_kb(out / f"kb-io-{name}", f"executor: {name}\n")
            result = add(kb, [docs], jobs=jobs, env={"OPENKB_PREPARE_SLEEP_MS": "50"})
            walls.append(result.wall_s)
            rss.append(result.peak_rss_mib)
        rows.append((f"{count} docs + 50 ms I/O wait each, jobs {jobs}, {name}",
                     f"{median(walls):.2f} s wall, peak RSS {median(rss):.0f} MiB", ""))
    return rows
