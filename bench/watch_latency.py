"""`openkb watch`: from a file written to its text being searchable.

A watch runs as a real process (``--debounce 0.2``, ``--jobs 2``) over an
empty folder; single files are written one at a time, each with a word of
its own, and the time until `openkb search` (the library, polled every
20 ms) finds it is taken; then a burst of files is written at once and the
time until the last one is searchable. The debounce is part of the
latency by design: a batch waits until its files have stopped changing."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import run
from bench.run import fresh_kb

Row = tuple[str, str, str]
DEBOUNCE_S = 0.2


def _searchable(kb: Path, word: str) -> bool:
    from openkb import api
    from openkb.progress import Progress

    return bool(api.search(str(kb), word, Progress()))


def _wait(kb: Path, word: str, timeout: float = 300) -> float:
    start = time.perf_counter()
    while not _searchable(kb, word):
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"{word} never became searchable")
        time.sleep(0.02)
    return time.perf_counter() - start


def _note(folder: Path, name: str, word: str) -> None:
    (folder / f"{name}.md").write_text(f"# Note {name}\n\nThis note is about {word} and "
                                       f"{word} again, {word} once more.\n")


def watch_latency(out: Path, runs: int, quick: bool) -> list[Row]:
    kb = fresh_kb(out / "kb-watch")
    folder = out / "watched"
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    folder.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "openkb", "--kb", str(kb), "--quiet", "watch", "--jobs", "2",
         "--debounce", str(DEBOUNCE_S), str(folder)],
        env={**os.environ, "PYTHONPATH": str(run.SOURCE)}, cwd=run.SOURCE,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # armed, and the catch-up sync of nothing done
        singles = []
        for i in range(5 if quick else 20):
            word = f"zyxsingle{i}q"
            start = time.perf_counter()
            _note(folder, f"single-{i}", word)
            singles.append(time.perf_counter() - start + _wait(kb, word))
        burst = 100 if quick else 1000
        start = time.perf_counter()
        for i in range(burst):
            _note(folder, f"burst-{i:04d}", f"zyxburst{i}q")
        burst_s = time.perf_counter() - start + _wait(kb, f"zyxburst{burst - 1}q")
        for i in range(burst):  # all of them, not only the last
            _wait(kb, f"zyxburst{i}q", timeout=60)
        burst_s = max(burst_s, time.perf_counter() - start)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    q = statistics.quantiles(singles, n=20)
    return [
        (f"watch: single file written -> searchable, p50 / p95 (debounce {DEBOUNCE_S} s)",
         f"{statistics.median(singles):.2f} s / {q[18]:.2f} s", ""),
        (f"watch: burst of {burst:,} files -> all searchable", f"{burst_s:.1f} s", ""),
    ]
