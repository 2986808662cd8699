"""KBs outlive releases: what openkb 0.1 left half-done, this openkb finishes.

tests/fixtures/crashed-kbs-0.1.tar.gz holds KBs that openkb 0.1 (commit
8ce9c5c) was SIGKILLed in, mid-transaction, with its journals in 0.1's
format (built by tests/fixtures/build_crashed_kbs.py). Recovery must read
them, roll each the right way, and leave a KB that verifies and takes new
documents.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from conftest import markdown_doc, verify_ok, write_tree

from openkb import api
from openkb.progress import Progress

FIXTURE = Path(__file__).parent / "fixtures" / "crashed-kbs-0.1.tar.gz"

# KB -> (documents after recovery, which way it went)
EXPECTED = {
    "update-compile.after": ({"alpha", "beta"}, "rolled_back"),
    "remove-keep-raw-publish.after": ({"alpha", "beta"}, "rolled_back"),
    "add-registry_write.after": ({"alpha", "beta", "gamma"}, "rolled_forward"),
    "add-mark_committed.status_written": ({"alpha", "beta", "gamma"}, "rolled_forward"),
}


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("upgrade")
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(root, filter="data")
    return root / "crashed-kbs-0.1"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_transaction_0_1_left_unfinished_is_finished(crashed: Path, tmp_path: Path,
                                                       name: str) -> None:
    kb = crashed / name
    (journal,) = (kb / ".openkb" / "journal").glob("*.json")
    docs, way = EXPECTED[name]
    report = api.recover(str(kb), Progress())
    assert getattr(report, way) == [journal.stem]
    verify_ok(kb)
    assert {row.name for row in api.list_documents(str(kb), Progress())} == docs
    if name.startswith("update"):
        source = (kb / "wiki" / "sources" / "alpha.md").read_text()
        assert "shared topic" in source and "figs" not in source
    if name.startswith("remove"):
        assert (kb / "raw" / "alpha.md").is_file()
        assert not list((kb / "attic").glob("*")) if (kb / "attic").exists() else True
    extra = write_tree(tmp_path / "extra", {"delta.md": markdown_doc("Delta", "quinces")})
    assert not api.add(str(kb), [str(extra)], Progress(), jobs=1).failed
    verify_ok(kb)
