"""What a big add costs as the KB grows: main-process memory, commit time
per document, search latency and bytes on disk, all read off one add of
20,000 generated notes (2,000 with --quick).

Memory and commit time come from the add's own progress events (each
carries the main process's RSS; each commit span its duration and its
documents), so they are measured where they happen, not sampled from
outside."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench import corpus, run
from bench.run import add, fresh_kb, median

Row = tuple[str, str, str]


def _rss_at(events: list[dict], committed: int) -> float:
    """The main process's RSS at the first commit that reached ``committed``."""
    for event in events:
        if event.get("event") == "committed" and \
                event.get("counts", {}).get("committed", 0) >= committed:
            return float(event["rss_mib"])
    raise ValueError(f"the add never committed {committed} documents")


def _commit_ms_per_doc(events: list[dict]) -> list[tuple[int, float]]:
    """(documents, milliseconds) of each commit, in order."""
    return [(len(e["doc"]), float(e["dur_ms"])) for e in events
            if e.get("event") == "commit" and e.get("kind") == "done"
            and e.get("outcome") == "ok"]


def _ms_per_doc(commits: list[tuple[int, float]]) -> float:
    return sum(ms for _, ms in commits) / max(sum(n for n, _ in commits), 1)


def _split(commits: list[tuple[int, float]], docs: int) -> tuple[list, list]:
    """The commits covering the first and the last ``docs`` documents."""
    first, seen = [], 0
    for item in commits:
        if seen >= docs:
            break
        first.append(item)
        seen += item[0]
    last, seen = [], 0
    for item in reversed(commits):
        if seen >= docs:
            break
        last.append(item)
        seen += item[0]
    return first, last


def _search_wall_s(kb: Path, runs: int) -> float:
    """`openkb search` as a user runs it: a new process, start-up included."""
    times = []
    env = {**os.environ, "PYTHONPATH": str(run.SOURCE)}
    for _ in range(max(runs, 5)):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "openkb", "--kb", str(kb), "search", "notes"],
                       check=True, capture_output=True, env=env, cwd=run.SOURCE)
        times.append(time.perf_counter() - start)
    return median(times)


def _bytes_under(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def growth(out: Path, runs: int, quick: bool) -> list[Row]:
    count = 2_000 if quick else 20_000
    early, window = count // 10, count // 5
    inputs = corpus.generate(out / f"gen-{count}", count, seed=11)
    kb = fresh_kb(out / "kb-growth")
    result = add(kb, [inputs], jobs=2, jsonl=out / "growth.jsonl")
    commits = _commit_ms_per_doc(result.events)
    first, last = _split(commits, window)
    rss_early, rss_end = _rss_at(result.events, early), _rss_at(result.events, count)
    first_ms, last_ms = _ms_per_doc(first), _ms_per_doc(last)
    input_bytes, kb_bytes = _bytes_under(inputs), _bytes_under(kb)
    sqlite_bytes = _bytes_under(kb / ".openkb")
    index_md = (kb / "wiki" / "index.md").stat().st_size
    return [
        (f"add of {count:,} notes: wall, rate",
         f"{result.wall_s:.1f} s, {result.committed / result.wall_s:.0f} docs/s", ""),
        (f"main-process RSS at {early:,} / {count:,} committed",
         f"{rss_early:.1f} / {rss_end:.1f} MiB (+{rss_end - rss_early:.1f})", "<= +8 MiB"),
        (f"commit time per doc, first / last {window:,} docs",
         f"{first_ms:.2f} / {last_ms:.2f} ms ({last_ms / first_ms:.2f}x)", "<= 1.3x"),
        (f"`openkb search` wall on {count:,} docs, start-up included",
         f"{_search_wall_s(kb, runs):.3f} s", "< 0.35 s"),
        ("KB bytes on disk per input byte (apparent)",
         f"{kb_bytes / input_bytes:.2f} ({kb_bytes / 1048576:.0f} MiB for "
         f"{input_bytes / 1048576:.0f} MiB; .openkb {sqlite_bytes / 1048576:.0f} MiB)", ""),
        ("wiki/index.md size", f"{index_md / 1024:.0f} KiB", "bounded"),
    ]
