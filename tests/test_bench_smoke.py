"""The benchmark stays runnable: a quick run of one section prints the table."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.heavy
def test_bench_quick_prints_the_table() -> None:
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "jsonl"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert "| metric" in result.stdout and "JSONL off -> on" in result.stdout
