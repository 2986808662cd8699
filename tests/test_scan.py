"""Finding the input files: a stable order, and nothing a user did not mean to add."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
from conftest import markdown_doc, write_tree

from openkb import api
from openkb.progress import Progress
from openkb.scan import ScanResult, scan_inputs


def scan(*inputs: Path, kb: Path, follow_symlinks: bool = False) -> ScanResult:
    return scan_inputs([str(p) for p in inputs], kb_root=kb, follow_symlinks=follow_symlinks)


def relative(result: ScanResult, top: Path) -> list[str]:
    return [os.path.relpath(e.display, top) for e in result.entries]


def skips(result: ScanResult, top: Path) -> dict[str, tuple[str, str]]:
    return {os.path.relpath(s.display, top): (s.reason, s.detail) for s in result.skipped}


def test_order_is_sorted_by_byte_name_files_before_subdirectories(tmp_path: Path) -> None:
    names = ["b.md", "B.md", "a/z.md", "a/b/c.md", "a.md", "é.md", "e.md", "10.md", "9.md",
             "a-b.md", "a_b.md", "z/a.md"]
    rng = random.Random(2)
    rng.shuffle(names)  # creation order must not matter
    top = write_tree(tmp_path / "in", {n: f"# {n}\n" for n in names})
    result = scan(top, kb=tmp_path / "kb")
    # Like `ls -R`: a directory's files, then each subdirectory in turn.
    assert relative(result, top) == ["10.md", "9.md", "B.md", "a-b.md", "a.md", "a_b.md",
                                     "b.md", "e.md", "é.md", "a/z.md", "a/b/c.md", "z/a.md"]
    assert [e.seq for e in result.entries] == list(range(len(names)))
    assert relative(scan(top, kb=tmp_path / "kb"), top) == relative(result, top)


def test_hidden_files_and_directories_are_skipped(tmp_path: Path) -> None:
    top = write_tree(tmp_path / "in", {"ok.md": "x", ".hidden.md": "x", ".git/config.md": "x",
                                       ".openkb/config.md": "x", "sub/.draft.md": "x"})
    result = scan(top, kb=tmp_path / "kb")
    assert relative(result, top) == ["ok.md"]
    assert skips(result, top) == {".git": ("hidden", ""), ".hidden.md": ("hidden", ""),
                                  ".openkb": ("hidden", ""), "sub/.draft.md": ("hidden", "")}


def test_the_kb_inside_the_input_is_skipped(tmp_path: Path) -> None:
    top = write_tree(tmp_path / "in", {"ok.md": "x"})
    kb = top / "kb"
    api.init(str(kb))
    write_tree(kb, {"raw/old.md": "x", "wiki/sources/old.md": "x"})
    result = scan(top, kb=kb)
    assert relative(result, top) == ["ok.md"]
    assert skips(result, top) == {"kb": ("hidden", "the knowledge base itself")}
    # Named directly, a folder or a file in the KB is skipped just the same.
    inside = scan(kb / "wiki", kb / "raw" / "old.md", kb=kb)
    assert inside.entries == []
    assert [(s.reason, s.detail) for s in inside.skipped] == [
        ("hidden", "the knowledge base itself"), ("hidden", "inside the knowledge base")]


def test_adding_a_folder_that_holds_the_kb_adds_nothing_of_the_kb(tmp_path: Path) -> None:
    top = write_tree(tmp_path / "in", {"ok.md": markdown_doc("Ok", "apples")})
    kb = top / "kb"
    api.init(str(kb))
    first = api.add(str(kb), [str(top)], Progress(), jobs=1)
    second = api.add(str(kb), [str(top)], Progress(), jobs=1)
    assert [name for name, _ in first.added] == ["ok"] and not second.added
    assert [s.reason for s in second.skipped] in (["hidden", "duplicate"],
                                                  ["hidden", "unchanged"])  # stat cache


def test_unsupported_extensions_are_skipped_with_a_reason(tmp_path: Path) -> None:
    top = write_tree(tmp_path / "in", {"a.md": "x", "b.MD": "x", "c.docx": "x", "d": "x",
                                       "e.markdown": "x", "f.htm": "x", "g.txt.gz": "x",
                                       "h.PDF": "%PDF-1.4"})
    result = scan(top, kb=tmp_path / "kb")
    assert relative(result, top) == ["a.md", "b.MD", "e.markdown", "f.htm", "h.PDF"]
    assert skips(result, top) == {name: ("unsupported", "") for name in ("c.docx", "d",
                                                                           "g.txt.gz")}


def test_overlapping_inputs_give_one_entry_per_file(tmp_path: Path) -> None:
    top = write_tree(tmp_path / "in", {"a.md": "x", "sub/b.md": "y", "sub/c.md": "z"})
    result = scan(top / "sub", top, top / "sub" / "b.md", kb=tmp_path / "kb")
    assert relative(result, top) == ["sub/b.md", "sub/c.md", "a.md"]
    assert [(os.path.relpath(s.display, top), s.reason) for s in result.skipped] == [
        ("sub/b.md", "duplicate-in-run"), ("sub/c.md", "duplicate-in-run"),
        ("sub/b.md", "duplicate-in-run")]


def test_hard_links_are_one_file(tmp_path: Path) -> None:
    top = write_tree(tmp_path / "in", {"a.md": "x"})
    os.link(top / "a.md", top / "b.md")
    result = scan(top, kb=tmp_path / "kb")
    assert relative(result, top) == ["a.md"]
    assert skips(result, top) == {"b.md": ("duplicate-in-run", str(top / "a.md"))}


def test_a_followed_directory_link_and_its_target_are_walked_once(tmp_path: Path) -> None:
    top = write_tree(tmp_path / "in", {"real/doc.md": "x"})
    (top / "alias").symlink_to("real")  # sorts before the directory it names
    (top / "real" / "again").symlink_to(".")
    result = scan(top, kb=tmp_path / "kb", follow_symlinks=True)
    assert relative(result, top) == ["real/doc.md"]
    assert skips(result, top) == {
        "real": ("duplicate-in-run", f"already scanned through {top / 'alias'}"),
        "real/again": ("symlink", "directory loop"),
    }


def test_missing_inputs_fail_and_the_rest_is_scanned(tmp_path: Path) -> None:
    top = write_tree(tmp_path / "in", {"a.md": "x"})
    result = scan(tmp_path / "nope", top, kb=tmp_path / "kb")
    assert relative(result, top) == ["a.md"]
    assert [(f.display, f.reason) for f in result.failed] == [
        (str(tmp_path / "nope"), "cannot read: No such file or directory")]


def test_deep_directories_are_walked_without_recursion_or_quadratic_cost(
        tmp_path: Path) -> None:
    deep = str(tmp_path / "in")
    levels = [deep]
    os.mkdir(deep)
    for _ in range(1500):  # deeper than Python's recursion limit
        deep += "/d"
        os.mkdir(deep)  # os.makedirs and Path.mkdir(parents=True) recurse
        levels.append(deep)
    Path(deep, "bottom.md").write_text("x")
    try:
        start = time.perf_counter()
        result = scan(tmp_path / "in", kb=tmp_path / "kb")
        assert [Path(e.display).name for e in result.entries] == ["bottom.md"]
        assert time.perf_counter() - start < 10  # linear in the depth, not quadratic
    finally:
        # pytest's own clean-up (shutil.rmtree) recurses and would fail on this tree.
        os.unlink(Path(deep, "bottom.md"))
        for level in reversed(levels):
            os.rmdir(level)


def test_entries_record_what_prepare_needs(tmp_path: Path) -> None:
    top = write_tree(tmp_path / "in", {"a.md": "hello"})
    [entry] = scan(Path(os.path.relpath(top)), kb=tmp_path / "kb").entries
    assert entry.path == str(top / "a.md") and os.path.isabs(entry.path)
    assert entry.size == 5 and entry.mtime_ns == (top / "a.md").stat().st_mtime_ns


@pytest.mark.parametrize("path", ["/a/b.md", "/a/./b.md", "/a//b.md", "/a/../b.md", "/a/b/",
                                  "/", "/a/.hidden/x.md", "rel/x.md", "/a/b/.", "//x.md",
                                  "/a/b/..", "./x.md"])
def test_entry_paths_are_what_abspath_says(path: str) -> None:
    """The scan skips abspath for paths that are already absolute and
    normal (a walk yields 60,000 of them); any other shape goes through it."""
    from openkb.scan import _absolute

    assert _absolute(path) == os.path.abspath(path)
