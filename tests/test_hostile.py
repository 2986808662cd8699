"""Hostile and broken input: each file gets a clear outcome of its own, and the
rest of the run is untouched.

Each case adds a folder holding the hostile file and one good file, then
checks the good file went in, the hostile one was added sensibly or failed
or skipped with the expected reason, and `verify` passes.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import zlib
from pathlib import Path

import pytest
from conftest import markdown_doc, run_openkb, verify_ok, write_tree
from pdfgen import make_encrypted_pdf, make_pdf

from openkb import api
from openkb.progress import Progress

GOOD = markdown_doc("Good document", "apples", "pears")


def _add(kb: Path, folder: Path, jobs: int = 1) -> api.AddReport:
    report = api.add(str(kb), [str(folder)], Progress(), jobs=jobs)
    assert "good" in {name for name, _ in report.added}, report
    verify_ok(kb)
    return report


def _outcome(report: api.AddReport, file: str) -> tuple[str, str]:
    for failure in report.failed:
        if failure.display.endswith(file):
            return "failed", failure.reason
    for skipped in report.skipped:
        if skipped.display.endswith(file):
            return "skipped", skipped.reason
    for name, display in report.added:
        if display.endswith(file):
            return "added", name
    raise AssertionError(f"{file} has no outcome")


@pytest.mark.parametrize(("name", "content", "outcome", "reason"), [
    ("empty.md", b"", "failed", "empty file (0 bytes)"),
    ("blank.txt", b"  \n\n\t\n", "failed", "no text"),
    ("truncated.pdf", make_pdf(["some words here"])[:150], "failed", "malformed PDF"),
    ("garbage.pdf", os.urandom(4000), "failed", "named .pdf but is not a PDF"),
    ("page.pdf", b"<!DOCTYPE html><html><body>404</body></html>", "failed",
     "not a PDF (looks like HTML)"),
    ("locked.pdf", make_encrypted_pdf("secret words", "pw"), "failed", "password is required"),
    ("binary.md", bytes(range(256)) * 64, "failed", "binary data"),
    ("zip.txt", b"PK\x03\x04" + bytes(4000), "failed", "binary data"),
])
def test_broken_files_fail_with_a_reason(kb: Path, tmp_path: Path, name: str, content: bytes,
                                         outcome: str, reason: str) -> None:
    folder = write_tree(tmp_path / "in", {"good.md": GOOD, name: content})
    report = _add(kb, folder)
    got, why = _outcome(report, name)
    assert got == outcome and reason in why, (got, why)


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("latin1.md", "# Café crème\n\nnaïve façade, naïve façade\n".encode("cp1252"), "naïve"),
    ("bom.md", "# Bom\n\nwith a byte order mark, a mark\n".encode("utf-8-sig"), "order mark"),
    ("utf16le.txt", "UTF-16 text\n\nsixteen bits per unit\n".encode("utf-16"), "sixteen bits"),
    ("utf16be.md", "\ufeff# Big endian\n\nbig endian words\n".encode("utf-16-be"), "big endian"),
    ("nul.md", b"# With NULs\n\nsome\x00 text with a stray\x00 NUL\n", "text with a stray NUL"),
    ("crlf.txt", b"Windows text\r\n\r\nline one\r\nline two\r\n", "line one\nline two"),
])
def test_odd_encodings_are_read_as_text(kb: Path, tmp_path: Path, name: str, content: bytes,
                                        expected: str) -> None:
    folder = write_tree(tmp_path / "in", {"good.md": GOOD, name: content})
    report = _add(kb, folder)
    got, doc = _outcome(report, name)
    assert got == "added"
    source = (kb / "wiki" / "sources" / f"{doc}.md").read_text()
    assert expected in source and "\x00" not in source and "\ufeff" not in source


@pytest.mark.parametrize(("name", "content"), [
    ("quotes.md", ">" * 100_000 + " deep\n"),
    ("lists.md", "".join("  " * i + "- item\n" for i in range(2000)) + "- " * 50_000 + "x\n"),
    ("divs.html", "<div>" * 100_000 + "<p>deep words here</p>"),
    ("brackets.md", "[" * 100_000 + "text" + "]" * 100_000 + "\n"),
])
def test_deep_nesting_is_added(kb: Path, tmp_path: Path, name: str, content: str) -> None:
    folder = write_tree(tmp_path / "in", {"good.md": GOOD, name: content})
    assert _outcome(_add(kb, folder), name)[0] == "added"


@pytest.mark.heavy
def test_a_50_mb_single_line_file_is_added_and_searchable(kb: Path, tmp_path: Path) -> None:
    words = " ".join(f"w{i % 5000}" for i in range(8_000_000))[:50_000_000]
    folder = write_tree(tmp_path / "in", {"good.md": GOOD, "long.txt": words + " needle\n"})
    got, doc = _outcome(_add(kb, folder, jobs=2), "long.txt")
    assert got == "added"
    assert api.search(str(kb), "needle", Progress())[0].doc == doc


@pytest.mark.heavy
def test_a_decompression_bomb_is_bounded(kb: Path, tmp_path: Path) -> None:
    """A page whose content stream inflates to 1 GiB: pypdf's limits and the
    worker's memory limit bound it; the run goes on."""
    compressor = zlib.compressobj(9)
    block = b"(A) Tj " * (1 << 17)
    bomb_stream = b"".join(compressor.compress(block) for _ in range(1024)) + compressor.flush()
    pdf = make_pdf(["x"], streams=[bomb_stream]).replace(
        b"<< /Length", b"<< /Filter /FlateDecode /Length", 1)
    folder = write_tree(tmp_path / "in", {"good.md": GOOD, "bomb.pdf": pdf})
    (kb / ".openkb" / "config.yaml").write_text("worker_memory_mb: 768\nconvert_timeout_s: 60\n")
    jsonl = tmp_path / "p.jsonl"
    result = run_openkb("--kb", str(kb), "--progress-jsonl", str(jsonl), "add", "--jobs", "2",
                        str(folder), timeout=300)
    assert result.returncode in (0, 1), result.stderr
    listing = {d["name"] for d in json.loads(
        run_openkb("--kb", str(kb), "list", "--json").stdout)}
    assert listing == {"good"}
    assert "bomb.pdf: page 1 decompresses past pypdf's safety limit" in result.stdout
    terminal = json.loads(jsonl.read_text().splitlines()[-1])
    assert terminal["max_worker_rss_mib"] < 1024
    verify_ok(kb)


def test_symlinks_are_not_followed_out_of_the_input(kb: Path, tmp_path: Path) -> None:
    outside = write_tree(tmp_path / "outside", {"secret.md": markdown_doc("Secret", "keys")})
    folder = write_tree(tmp_path / "in", {"good.md": GOOD, "sub/inner.md": GOOD + "\ninner\n"})
    (folder / "escape.md").symlink_to(outside / "secret.md")
    (folder / "escape-dir").symlink_to(outside)
    (folder / "loop").symlink_to(folder)
    (folder / "sub" / "alias.md").symlink_to(folder / "sub" / "inner.md")
    report = _add(kb, folder)
    for name in ("escape.md", "escape-dir", "loop", "alias.md"):
        assert _outcome(report, name) == ("skipped", "symlink")
    # Followed on request, but only inside the input directory, never in a loop.
    (kb / ".openkb" / "config.yaml").write_text("follow_symlinks: true\n")
    report = api.add(str(kb), [str(folder)], Progress(), jobs=1)
    assert _outcome(report, "escape.md") == ("skipped", "symlink")
    assert _outcome(report, "escape-dir") == ("skipped", "symlink")
    assert _outcome(report, "loop") == ("skipped", "symlink")
    assert _outcome(report, "alias.md") == ("skipped", "duplicate")  # inner.md is in
    assert not (kb / "raw" / "secret.md").exists()


def test_fifos_sockets_and_devices_are_skipped_without_blocking(kb: Path,
                                                               tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "in", {"good.md": GOOD})
    os.mkfifo(folder / "pipe.md")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "sock.md"))
    device = folder / "null.md"
    try:
        os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        device = None
    try:
        result = run_openkb("--kb", str(kb), "add", "--json", str(folder), timeout=60)
    finally:
        server.close()
    report = json.loads(result.stdout)
    skipped = {Path(s["file"]).name: s["reason"] for s in report["skipped"]}
    assert skipped["pipe.md"] == "special" and skipped["sock.md"] == "special"
    if device is not None:
        assert skipped["null.md"] == "special"
    assert [a["name"] for a in report["added"]] == ["good"]


def test_files_that_change_or_vanish_after_the_scan(tmp_path: Path) -> None:
    from openkb.model import PrepareTask
    from openkb.prefilter import hash_file
    from openkb.prepare.stage import PrepareLimits, prepare_file

    path = tmp_path / "moving.md"
    path.write_text(GOOD)
    limits = PrepareLimits(10 * 1048576, 1500, 10)

    def task() -> PrepareTask:
        return PrepareTask(0, str(path), "moving.md", sha, len(GOOD), "moving", "markdown",
                           ".md", str(tmp_path / "staging" / str(len(list(tmp_path.iterdir())))))

    sha = hash_file(str(path))
    path.write_text(GOOD + "\nedited after the scan\n")
    with pytest.raises(api.FileRejected if hasattr(api, "FileRejected") else Exception,
                       match="changed after it was scanned"):
        prepare_file(task(), limits)
    path.unlink()
    with pytest.raises(Exception, match="vanished after it was scanned"):
        prepare_file(task(), limits)
    path.symlink_to(tmp_path)
    with pytest.raises(Exception, match="cannot open"):
        prepare_file(task(), limits)


def test_twins_and_odd_names_get_distinct_safe_names(kb: Path, tmp_path: Path) -> None:
    files = {
        "Notes.md": markdown_doc("Upper", "apples"),
        "notes.md": markdown_doc("Lower", "pears"),
        "caf\u00e9.md": markdown_doc("NFC", "plums"),
        "cafe\u0301.md": markdown_doc("NFD", "figs"),
        "new\nline.md": markdown_doc("Newline", "kiwis"),
        "tab\tand\x07bell.md": markdown_doc("Control", "limes"),
        "index.md": markdown_doc("Index", "dates"),
        "log.md": markdown_doc("Log", "melons"),
        ("\u00e9" * 120) + ".md": markdown_doc("Long", "grapes"),
        "good.md": GOOD,
    }
    folder = write_tree(tmp_path / "in", files)
    report = _add(kb, folder)
    names = {Path(display).name: name for name, display in report.added}
    assert len(names) == len(files) and len(set(names.values())) == len(files)
    assert {names["Notes.md"], names["notes.md"]} == {"notes", "notes-2"}
    assert {names["caf\u00e9.md"], names["cafe\u0301.md"]} == {"café", "café-2"}
    assert names["new\nline.md"] == "new-line"
    assert names["index.md"] == "index-doc" and names["log.md"] == "log-doc"
    assert all(len(n.encode()) <= 200 for n in names.values())
    assert all(ch.isprintable() for n in names.values() for ch in n)
