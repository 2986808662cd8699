"""A commit's cost does not grow with the KB's size in bytes.

Two KBs, of 10,000 and of 1,000,000 synthetic documents (inserted straight
into the registry, with the catalog pages they imply: bench/synthetic.py),
take the same 16 new documents in one group commit, as a real `openkb add`.
What the commit writes of shared pages (index.md, catalog pages, concept
pages, log.md), which the commit span reports, must stay within 1.3x: it is
what used to grow (index.md alone was ~75 MB at a million documents). The
time itself is measured by `python -m bench --only commit_size`, not here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import ROOT, markdown_doc, run_openkb, write_tree

sys.path.insert(0, str(ROOT))
from bench import synthetic


def _commits_of_16(kb: Path, docs: Path, jsonl: Path) -> list[dict]:
    result = run_openkb("--kb", str(kb), "--progress-jsonl", str(jsonl), "add", "--jobs", "1",
                        str(docs), timeout=600)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in jsonl.read_text().splitlines()]
    return [e for e in events if e["event"] == "commit" and e["kind"] == "done"]


@pytest.mark.heavy
def test_a_group_commit_writes_as_much_on_a_million_documents_as_on_ten_thousand(
        tmp_path: Path) -> None:
    docs = write_tree(tmp_path / "batch", {
        f"paper-{i:02d}.md": markdown_doc(f"Paper {i}", f"batch topic {i % 4}") for i in range(16)})
    written = {}
    for count in (10_000, 1_000_000):
        kb = tmp_path / f"kb-{count}"
        assert run_openkb("init", str(kb)).returncode == 0
        synthetic.fill(kb, count)
        commits = _commits_of_16(kb, docs, tmp_path / f"{count}.jsonl")
        assert sum(len(c["doc"]) if isinstance(c["doc"], list) else 1 for c in commits) == 16
        written[count] = sum(c["page_bytes"] for c in commits)
        index = (kb / "wiki" / "index.md").stat().st_size
        assert index < 1024 * 1024, index  # a short line per page of ~256 documents
    assert written[1_000_000] <= 1.3 * written[10_000], written
