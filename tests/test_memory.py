"""A long add keeps in memory what its window holds, not what it has done.

An add of a few thousand tiny notes runs in a child process with
tracemalloc on; a progress listener reads the traced memory (after a full
collection) when the run has committed ``FIRST`` and ``LAST`` documents.
What the main process still holds per committed document (the report's
names, the stat cache's entries, the digests seen) shows as growth between
the two; what it needs for the window does not.

tracemalloc counts the bytes Python allocates, the same on any machine for
the same code, so the bound is not a guess about this machine's speed or
allocator. The checkpoints sit where the run is alike but for what it has
done: the prefilter, a window ahead of the commits, is still running at
both, and both are as far into the stat cache's write batch (``FLUSH_EVERY``
files apart). The window is made small (``prepare_buffer``): how many of
its files happen to be prepared at a checkpoint depends on timing, and
1,024 prepared notes would weigh more than what the test looks for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from openkb.statcache import FLUSH_EVERY

ROOT = Path(__file__).resolve().parents[1]

FIRST = 500
LAST = FIRST + FLUSH_EVERY
WINDOW = 16  # prepare_buffer
NOTES = LAST + WINDOW + 300  # the prefilter is not done at LAST
# Measured: ~3 bytes per document; 527 before the report spilled, the stat
# cache and the in-run digests forgot committed files (93 with the digests).
ALLOWED_BYTES_PER_DOC = 64

CHILD = r"""
import gc, json, sys, tracemalloc
from pathlib import Path

from openkb import api
from openkb.progress import Progress

def main(kb, inputs, window, marks):
    api.init(kb)
    with open(Path(kb) / ".openkb" / "config.yaml", "a") as config:
        config.write(f"\nprepare_buffer: {window}\n")
    traced = {}
    def listener(record):
        if record.get("event") != "committed":
            return
        committed = record["counts"]["committed"]
        for mark in marks:
            if committed >= mark and mark not in traced:
                gc.collect()
                traced[mark] = tracemalloc.get_traced_memory()[0]
    progress = Progress()
    progress.subscribe(listener)
    tracemalloc.start()
    report = api.add(kb, [inputs], progress, jobs=2)
    print(json.dumps({"traced": traced, "added": len(report.added),
                      "names": sum(1 for _ in report.added)}))

if __name__ == "__main__":  # the workers' forkserver imports this module
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), [int(m) for m in sys.argv[4:]])
"""


def _notes(root: Path, count: int) -> Path:
    for i in range(count):
        folder = root / f"d{i // 200:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"note-{i:05d}.md").write_text(f"# Note {i}\n\nword{i % 50} text {i}\n")
    return root


@pytest.mark.heavy
def test_a_long_add_holds_nothing_per_committed_document(tmp_path: Path) -> None:
    inputs = _notes(tmp_path / "notes", NOTES)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "kb"), str(inputs), str(WINDOW), str(FIRST),
         str(LAST)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    # Every name is still reported, though not held in memory.
    assert result["added"] == result["names"] == NOTES
    first, last = result["traced"][str(FIRST)], result["traced"][str(LAST)]
    per_doc = (last - first) / (LAST - FIRST)
    assert per_doc <= ALLOWED_BYTES_PER_DOC, (
        f"traced memory grew from {first:,} to {last:,} bytes between {FIRST} and "
        f"{LAST} committed documents: {per_doc:.0f} bytes per document")
