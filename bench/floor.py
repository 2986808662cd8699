"""The conversion floor: CPU seconds to prepare each file, in a fresh process.

Runs the same stage function the workers run (prepare_file) on every file,
one at a time, timing each with time.process_time, so the sum is the work
no scheduling can avoid. `python -m bench.floor FILE...` prints the total.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import tempfile
import time
from pathlib import Path

from openkb.errors import FileRejected
from openkb.model import PrepareTask
from openkb.prepare.sniff import detect_kind_by_name, is_supported
from openkb.prepare.stage import PrepareLimits, prepare_file


def cpu_seconds(files: list[Path]) -> float:
    limits = PrepareLimits(256 * 1048576, 1500, 10)
    total = 0.0
    with tempfile.TemporaryDirectory() as staging:
        for n, path in enumerate(files):
            if not is_supported(str(path)) or any(p.startswith(".") for p in path.parts):
                continue
            data = path.read_bytes()
            kind, ext = detect_kind_by_name(str(path))
            task = PrepareTask(n, str(path), str(path), hashlib.sha256(data).hexdigest(),
                               len(data), f"d{n}", kind, ext, f"{staging}/{n}")
            start = time.process_time()
            with contextlib.suppress(FileRejected):
                prepare_file(task, limits)
            total += time.process_time() - start
    return total


if __name__ == "__main__":
    paths = [p for arg in sys.argv[1:] for p in
             (sorted(Path(arg).rglob("*")) if Path(arg).is_dir() else [Path(arg)]) if p.is_file()]
    print(f"{cpu_seconds(paths):.3f}")
