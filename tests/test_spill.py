"""The run report's per-file lists go to a temporary file past a few
hundred entries (openkb.ingest.spill), and read back whole and in order."""

from __future__ import annotations

import json
import pickle
import tempfile
from pathlib import Path

import pytest
from conftest import write_tree

from openkb.ingest import spill
from openkb.ingest.spill import SpillList
from openkb.model import Skipped

# Names and paths may hold anything a file name can: newlines, and bytes
# that are not UTF-8 (decoded with surrogate escapes).
AWKWARD = ("plain", "new\nline", "caf\udce9", "tab\tand \"quotes\"", "")


def test_every_item_comes_back_in_order_across_batches() -> None:
    items = [(f"doc-{i}", AWKWARD[i % len(AWKWARD)] + str(i))
             for i in range(3 * spill.SPILL_EVERY + 7)]
    spilled = SpillList(items[:10])
    spilled += items[10:]
    assert spilled._spilled == 3 * spill.SPILL_EVERY  # most of it is on disk
    assert len(spilled) == len(items) and spilled == items and list(spilled) == items
    # Two readers at once, and a reader while the list grows, each see it whole.
    first, second = iter(spilled), iter(spilled)
    assert [next(first) for _ in range(5)] == items[:5] == [next(second) for _ in range(5)]
    spilled.append(("late", "x"))
    assert list(first) == [*items[5:], ("late", "x")]
    assert pickle.loads(pickle.dumps(spilled)) == [*items, ("late", "x")]


def test_a_temporary_file_that_cannot_be_written_keeps_the_items_in_memory(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no such dir"))
    items = [Skipped(f"f{i}", "duplicate", AWKWARD[i % len(AWKWARD)])
             for i in range(2 * spill.SPILL_EVERY)]
    spilled = SpillList(items)
    assert spilled._file is None and spilled == items


def test_add_json_lists_every_file_when_the_report_spilled(
        cli, kb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spill, "SPILL_EVERY", 2)
    files = {f"n{i}.md": f"# Note {i}\n\nabout topic{i}\n" for i in range(7)}
    files |= {"same.md": files["n0.md"], "other.md": files["n1.md"]}
    docs = write_tree(tmp_path / "docs", files)
    added = json.loads(cli("--kb", str(kb), "add", "--json", str(docs)).out)
    assert sorted(a["name"] for a in added["added"]) == [f"n{i}" for i in range(7)]
    assert {Path(s["file"]).name for s in added["skipped"]} == {"same.md", "other.md"}
    again = json.loads(cli("--kb", str(kb), "add", "--json", str(docs)).out)
    assert again["added"] == [] and len(again["skipped"]) == 9


def test_the_streamed_json_is_byte_for_byte_the_whole_document(
        capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    from openkb.cli.render import print_json

    rows = [{"name": f"n{i}", "file": f"line\nbreak {i} \"q\" é"} for i in range(5)]
    document = {"added": rows, "updated": [], "nested": {"a": [1, {"b": None}], "c": {}},
                "skipped": rows[:1], "text": "x\ny", "n": 3}
    print_json({k: iter(v) if k in ("added", "updated", "skipped") else v
                for k, v in document.items()})
    streamed = capsysbinary.readouterr().out
    print_json(document)
    assert streamed == capsysbinary.readouterr().out
    assert json.loads(streamed) == document
