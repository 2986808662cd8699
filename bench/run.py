"""Running openkb as a real process and reading what it reports."""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
# The openkb source tree the runs use: this one, or a baseline (--baseline).
SOURCE = ROOT


def use_source(path: Path) -> None:
    global SOURCE
    SOURCE = path


def compile_bytecode(tree: Path) -> None:
    """Write the .pyc files of ``tree``'s openkb, as ``pip install`` does:
    an environment with PYTHONDONTWRITEBYTECODE (this workplace sets it)
    would otherwise compile every module on every run, and start-up would
    be measured at up to twice what a user sees."""
    import compileall

    compileall.compile_dir(tree / "openkb", quiet=1)


@dataclass
class RunResult:
    wall_s: float
    cpu_s: float  # user + system of openkb and every process under it
    user_s: float  # user alone: what openkb's own code costs, without the kernel's I/O
    events: list[dict]
    peak_rss_mib: float
    returncode: int

    def phase_ms(self, phase: str) -> float:
        return sum(e.get("dur_ms", 0.0) for e in self.events
                   if e.get("kind") == "done" and e.get("phase") == phase and
                   e.get("event") == phase)

    @property
    def committed(self) -> int:
        terminal = self.terminal
        return terminal["counts"]["committed"] if terminal else 0

    @property
    def terminal(self) -> dict | None:
        return next((e for e in reversed(self.events) if e.get("kind") == "terminal"), None)


def openkb(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # cwd: `python -m` puts it first on sys.path, ahead of PYTHONPATH.
    return subprocess.run([sys.executable, "-m", "openkb", *args], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(SOURCE), **(env or {})},
                          cwd=SOURCE)


def fresh_kb(path: Path, config: str = "") -> Path:
    if path.exists():
        shutil.rmtree(path)
    assert openkb("init", str(path)).returncode == 0
    if config:
        (path / ".openkb" / "config.yaml").write_text(config)
    return path


def _sample_rss(pid: int, stop: threading.Event, peak: list[float]) -> None:
    """Peak RSS of the process tree (main, fork server, workers), every 50 ms."""
    while not stop.wait(0.05):
        try:
            tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
            peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree) / 1048576)
        except psutil.Error:
            continue


def add(kb: Path, inputs: list[Path], *, jobs: int, jsonl: Path | None = None,
        env: dict[str, str] | None = None) -> RunResult:
    args = [sys.executable, "-m", "openkb", "--kb", str(kb), "--quiet"]
    if jsonl is not None:
        if jsonl.exists():
            jsonl.unlink()
        args += ["--progress-jsonl", str(jsonl)]
    args += ["add", "--jobs", str(jobs), *map(str, inputs)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(args, env={**os.environ, "PYTHONPATH": str(SOURCE), **(env or {})},
                            cwd=SOURCE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    stop, peak = threading.Event(), [0.0]
    sampler = threading.Thread(target=_sample_rss, args=(proc.pid, stop, peak), daemon=True)
    sampler.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user = after.ru_utime - before.ru_utime
    cpu = user + (after.ru_stime - before.ru_stime)
    stop.set()
    sampler.join()
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"openkb add failed ({proc.returncode}): {err[-2000:]}")
    events = []
    if jsonl is not None:
        events = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    return RunResult(wall, cpu, user, events, peak[0], proc.returncode)


def median(values: list[float]) -> float:
    return statistics.median(values)


def checkout(ref: str, out: Path) -> Path:
    """The source tree of commit ``ref``, exported under ``out`` (no worktree:
    nothing is registered in the repository)."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", ref],
                         capture_output=True, text=True, check=True).stdout.strip()
    target = out / f"baseline-{sha}"
    if not (target / "openkb").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target
