"""`openkb sync`: a KB that follows its folders, deletions and moves included,
and refuses to follow them off a cliff (the mass-delete guard)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import markdown_doc, tree_hash, verify_ok, write_tree

from openkb import api
from openkb.progress import Progress


def _tree(root: Path) -> Path:
    return write_tree(root, {
        "apples.md": markdown_doc("Apples", "apples", "orchards"),
        "pears.md": markdown_doc("Pears", "pears", "orchards"),
        "plums.txt": "Plums\n\nplain text about plums and plums and orchards.\n",
        "deep/quinces.md": markdown_doc("Quinces", "quinces", "jelly"),
    })


def _docs(kb: Path) -> dict[str, str]:
    return {row.name: row.origin for row in api.list_documents(str(kb), Progress())}


def _sync(kb: Path, *paths: Path, **kwargs: object) -> api.SyncReport:
    return api.sync(str(kb), [str(p) for p in paths], Progress(), jobs=1, **kwargs)


@pytest.fixture
def synced(kb: Path, tmp_path: Path) -> tuple[Path, Path]:
    folder = _tree(tmp_path / "notes")
    report = _sync(kb, folder)
    assert sorted(n for n, _ in report.added) == ["apples", "pears", "plums", "quinces"]
    return kb, folder


def test_a_deleted_file_is_removed_and_add_never_removes(synced: tuple[Path, Path]) -> None:
    kb, folder = synced
    (folder / "pears.md").unlink()
    assert not api.add(str(kb), [str(folder)], Progress(), jobs=1).failed
    assert "pears" in _docs(kb)
    report = _sync(kb, folder)
    assert report.removed == [("pears", str(folder / "pears.md"))]
    assert report.exit_code == 0
    assert set(_docs(kb)) == {"apples", "plums", "quinces"}
    assert not (kb / "raw" / "pears.md").exists()
    assert "remove [[summaries/pears" in (kb / "wiki" / "log.md").read_text()
    verify_ok(kb)


def test_keep_raw_puts_the_originals_of_removed_documents_in_the_attic(
        synced: tuple[Path, Path]) -> None:
    kb, folder = synced
    original = (folder / "plums.txt").read_bytes()
    (folder / "plums.txt").unlink()
    report = _sync(kb, folder, keep_raw=True)
    assert [n for n, _ in report.removed] == ["plums"]
    assert (kb / "attic" / "plums.txt").read_bytes() == original
    verify_ok(kb)


def test_a_moved_file_keeps_its_document_and_is_not_converted_again(
        synced: tuple[Path, Path]) -> None:
    kb, folder = synced
    before = api.show(str(kb), "apples", Progress())
    source_inode = before.source_path.stat().st_ino
    (folder / "archive").mkdir()
    (folder / "apples.md").rename(folder / "archive" / "old-apples.md")
    report = _sync(kb, folder)
    assert [(n, new) for n, _, new in report.moved] == [
        ("apples", str(folder / "archive" / "old-apples.md"))]
    assert not report.added and not report.removed
    after = api.show(str(kb), "apples", Progress())
    assert after.row.origin == str(folder / "archive" / "old-apples.md")
    # Same transaction of origin, same files: nothing was converted or published again.
    assert (after.row.txid, after.row.added_at) == (before.row.txid, before.row.added_at)
    assert after.source_path.stat().st_ino == source_inode
    assert after.summary == before.summary
    assert "move [[summaries/apples" in (kb / "wiki" / "log.md").read_text()
    verify_ok(kb)
    # A second sync finds nothing to do.
    again = _sync(kb, folder)
    assert not (again.added or again.updated or again.moved or again.removed)


def test_a_file_that_is_no_longer_included_is_removed(synced: tuple[Path, Path]) -> None:
    kb, folder = synced
    (folder / "deep" / "quinces.md").rename(folder / "deep" / ".quinces.md")
    (folder / "plums.txt").rename(folder / "plums.bin")
    report = _sync(kb, folder, max_delete="100%")
    assert sorted(n for n, _ in report.removed) == ["plums", "quinces"]
    verify_ok(kb)


def test_only_documents_under_the_synced_paths_are_touched(synced: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    kb, folder = synced
    other = write_tree(tmp_path / "other", {"figs.md": markdown_doc("Figs", "figs")})
    _sync(kb, other)
    (folder / "deep" / "quinces.md").unlink()
    (folder / "pears.md").unlink()
    # A sub-folder: only what came from there (all of it, so past the guard).
    report = _sync(kb, folder / "deep", max_delete="100%")
    assert [n for n, _ in report.removed] == ["quinces"]
    assert {"pears", "figs"} <= set(_docs(kb))
    # A single file as the path: its own document only.
    shutil.rmtree(other)
    other.mkdir()
    with pytest.raises(api.UsageError, match="does not exist"):
        _sync(kb, other / "figs.md")
    assert "figs" in _docs(kb)


def test_the_mass_delete_guard_changes_nothing_and_names_the_flag(
        synced: tuple[Path, Path], cli) -> None:  # type: ignore[no-untyped-def]
    kb, folder = synced
    for name in ("apples.md", "pears.md", "plums.txt"):
        (folder / name).unlink()
    write_tree(folder, {"new.md": markdown_doc("New", "news")})
    before = tree_hash(kb)
    result = cli("--kb", str(kb), "sync", str(folder))
    assert result.code == 2
    assert "3 of the 4 documents" in result.err and "--max-delete" in result.err
    assert tree_hash(kb) == before  # not even the new file was added
    # A dry run shows the plan, and says the sync would be refused.
    dry = cli("--kb", str(kb), "sync", "--dry-run", "--json", str(folder))
    assert dry.code == 2
    plan = json.loads(dry.out)
    assert plan["dry_run"] and "3 of the 4" in plan["refused"]
    assert sorted(r["name"] for r in plan["removed"]) == ["apples", "pears", "plums"]
    assert tree_hash(kb) == before
    # A count, a larger share, or the config, lets it through.
    assert cli("--kb", str(kb), "sync", "--max-delete", "2", str(folder)).code == 2
    (kb / ".openkb" / "config.yaml").write_text("sync_max_delete: 75%\n")
    result = cli("--kb", str(kb), "sync", "--json", str(folder))
    assert result.code == 0, result.err
    out = json.loads(result.out)
    assert sorted(r["name"] for r in out["removed"]) == ["apples", "pears", "plums"]
    assert [a["name"] for a in out["added"]] == ["new"]
    verify_ok(kb)


def test_an_emptied_folder_is_refused_and_a_missing_one_is_a_usage_error(
        synced: tuple[Path, Path], cli) -> None:  # type: ignore[no-untyped-def]
    kb, folder = synced
    before = tree_hash(kb)
    shutil.rmtree(folder)
    missing = cli("--kb", str(kb), "sync", str(folder))
    assert missing.code == 2 and "does not exist" in missing.err
    folder.mkdir()  # an empty mount point
    assert cli("--kb", str(kb), "sync", str(folder)).code == 2
    assert cli("--kb", str(kb), "sync", "--max-delete", "lots", str(folder)).code == 2
    assert tree_hash(kb) == before


def test_dry_run_prints_the_plan_and_changes_nothing(synced: tuple[Path, Path],
                                                     cli) -> None:  # type: ignore[no-untyped-def]
    kb, folder = synced
    (folder / "pears.md").unlink()
    (folder / "plums.txt").rename(folder / "deep" / "plums.txt")
    (folder / "apples.md").write_text(markdown_doc("Apples", "apples", "cider"))
    write_tree(folder, {"new.md": markdown_doc("New", "news")})
    before = tree_hash(kb)
    result = cli("--kb", str(kb), "sync", "--dry-run", str(folder))
    assert result.code == 0, result.err
    assert "would remove pears" in result.out
    assert "would move plums" in result.out
    assert "would update apples" in result.out
    assert "would add" in result.out and "as new" in result.out
    assert tree_hash(kb) == before
    # ... and the sync does what the dry run said.
    out = json.loads(cli("--kb", str(kb), "sync", "--json", str(folder)).out)
    assert [r["name"] for r in out["removed"]] == ["pears"]
    assert [m["name"] for m in out["moved"]] == ["plums"]
    assert [u["name"] for u in out["updated"]] == ["apples"]
    assert [a["name"] for a in out["added"]] == ["new"]
    assert {"skipped", "failed", "exit_code", "wall_s"} <= set(out)
    verify_ok(kb)
