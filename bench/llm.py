"""The LLM stage against a chat-completions server on loopback with a fixed
latency per call: is the wall close to latency x documents / concurrency?"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench import corpus
from bench.run import ROOT, SOURCE, fresh_kb

sys.path.insert(0, str(ROOT / "tests"))
from llm_server import ChatServer

LATENCY_S = 0.5
Row = tuple[str, str, str]


def _add(kb: Path, inputs: Path, *llm: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "openkb", "--kb", str(kb), "--quiet", "add", "--jobs", "2",
         *llm, str(inputs)], cwd=SOURCE, capture_output=True, text=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")},
             "PYTHONPATH": str(SOURCE)})
    if proc.returncode != 0:
        raise RuntimeError(f"openkb add failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - start


def llm_stage(out: Path, runs: int, quick: bool) -> list[Row]:
    """The same add without the LLM is the baseline: the LLM stage's own
    cost is the wall above it, against latency x docs / concurrency."""
    docs = 20 if quick else 100
    inputs = corpus.generate(out / "gen-llm", docs)
    base = _add(fresh_kb(out / "kb-llm-base"), inputs)
    rows: list[Row] = [(f"{docs} docs without the LLM: wall", f"{base:.2f} s", "")]
    for concurrency in (1, 4, 16):
        with ChatServer(latency_s=LATENCY_S) as server:
            kb = fresh_kb(out / f"kb-llm-{concurrency}",
                          server.config_yaml(concurrency=concurrency))
            wall = _add(kb, inputs, "--llm")
            ideal = LATENCY_S * docs / concurrency
            rows += [
                (f"{docs} docs, {LATENCY_S} s/call, concurrency {concurrency}: wall",
                 f"{wall:.2f} s", ""),
                ("  calls (at the server)", str(server.requests), str(docs)),
                (f"  (wall - baseline) / (latency x docs / concurrency = {ideal:.2f} s)",
                 f"{(wall - base) / ideal:.2f}", "close to 1"),
            ]
    return rows
