"""Hostile and broken input: each file gets a clear outcome of its own, and the
rest of the run is untouched.

Each case adds a folder holding the hostile file and one good file, then
checks the good file went in, the hostile one was added sensibly or failed
or skipped with the expected reason, and `verify` passes. Cases that could
block (FIFOs) or eat memory (bombs) run openkb as a subprocess with a
timeout, so a hang fails the test instead of hanging the suite.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import json
import os
import random
import socket
import stat
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import psutil
import pytest
from conftest import ROOT, markdown_doc, run_openkb, verify_ok, write_tree
from pdfgen import make_encrypted_pdf, make_image_only_pdf, make_pdf

from openkb import api
from openkb.digest import sha256_file as hash_file
from openkb.errors import FileRejected
from openkb.model import PrepareTask
from openkb.names import MAX_NAME_BYTES
from openkb.prepare.stage import PrepareLimits, prepare_file
from openkb.progress import Progress

GOOD = markdown_doc("Good document", "apples", "pears")
NOISE = random.Random(1234).randbytes(4000)  # fixed "garbage", so every run is the same


def _add(kb: Path, folder: Path, jobs: int = 1) -> api.AddReport:
    report = api.add(str(kb), [str(folder)], Progress(), jobs=jobs)
    assert "good" in {name for name, _ in report.added}, report
    verify_ok(kb)
    return report


def _outcome(report: api.AddReport, file: str) -> tuple[str, str]:
    """("added", doc name) or ("failed" | "skipped", reason) for one input."""
    for failure in report.failed:
        if failure.display.endswith(file):
            return "failed", failure.reason
    for skipped in report.skipped:
        if skipped.display.endswith(file):
            return "skipped", skipped.reason
    for name, display in report.added:
        if display.endswith(file):
            return "added", name
    raise AssertionError(f"{file} has no outcome in {report}")


# -- broken files ------------------------------------------------------------

@pytest.mark.parametrize(("name", "content", "reason"), [
    ("empty.md", b"", "empty file (0 bytes)"),
    ("empty.pdf", b"", "empty file (0 bytes)"),
    ("blank.txt", b"  \n\n\t\n", "no text (only whitespace)"),
    ("truncated.pdf", make_pdf(["some words here"])[:150], "malformed PDF: truncated"),
    ("cut-at-the-end.pdf", make_pdf(["some words here"])[:-30], "malformed PDF: truncated"),
    ("garbage.pdf", NOISE, "named .pdf but is not a PDF"),
    ("garbage-with-header.pdf", b"%PDF-1.7\n" + NOISE + b"\n%%EOF\n", "malformed PDF"),
    ("page.pdf", b"<!DOCTYPE html><html><body>404</body></html>",
     "named .pdf but is not a PDF (looks like HTML)"),
    ("locked.pdf", make_encrypted_pdf("secret words", "pw"),
     "encrypted PDF: a password is required"),
    ("scanned.pdf", make_image_only_pdf(), "no extractable text"),
    ("no-pages.pdf", make_pdf([]), "PDF has no pages"),
    ("binary.md", bytes(range(256)) * 64, "binary data"),
    ("report.txt", b"PK\x03\x04" + bytes(4000), "binary data (looks like a ZIP archive"),
    ("picture.html", b"\x89PNG\r\n\x1a\n" + NOISE, "binary data (looks like a PNG image"),
    ("paper.html", make_pdf(["a PDF named .html"]), "binary data (looks like a PDF"),
    ("only-controls.md", b"\x01\x02\x03\x1b" * 10, "binary data"),
])
def test_broken_files_fail_with_a_reason(kb: Path, tmp_path: Path, name: str, content: bytes,
                                         reason: str) -> None:
    folder = write_tree(tmp_path / "in", {"good.md": GOOD, name: content})
    got, why = _outcome(_add(kb, folder), name)
    assert got == "failed" and reason in why, (got, why)


def test_a_file_over_the_size_limit_is_failed_without_being_read(kb: Path,
                                                                  tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "in", {"good.md": GOOD})
    with open(folder / "huge.txt", "wb") as sparse:
        sparse.truncate(3 * 1048576)  # a hole: no disk space, no bytes to read
    (kb / ".openkb" / "config.yaml").write_text("max_file_mb: 2\n")
    got, why = _outcome(_add(kb, folder), "huge.txt")
    assert (got, why) == ("failed", "too large: 3.0 MiB (limit max_file_mb = 2)")


# -- encodings -----------------------------------------------------------------

@pytest.mark.parametrize(("name", "content", "expected"), [
    ("latin1.md", "# Café crème\n\nnaïve façade, naïve façade\n".encode("cp1252"), "naïve"),
    ("invalid-utf8.txt", "Mostly UTF-8\n\nnaïve café, crème brûlée ".encode() + b"\xff\xc3( end\n",
     "crème brûlée \ufffd\ufffd( end"),
    ("bom.md", "# Bom\n\nwith a byte order mark, a mark\n".encode("utf-8-sig"), "order mark"),
    ("utf16le.txt", codecs.BOM_UTF16_LE + "UTF-16 text\n\nsixteen bits\n".encode("utf-16-le"),
     "sixteen bits"),
    ("utf16be.md", codecs.BOM_UTF16_BE + "# Big endian\n\nbig endian words\n".encode(
        "utf-16-be"), "big endian words"),
    ("utf16-no-bom.txt", "No BOM here\n\nstill sixteen bits\n".encode("utf-16-le"),
     "still sixteen bits"),
    ("utf32.md", "# Thirty-two\n\nfour bytes each\n".encode("utf-32"), "four bytes each"),
    ("nul.md", b"# With NULs\n\nsome\x00 text with a stray\x00 NUL\n", "text with a stray NUL"),
    ("crlf.txt", b"Windows text\r\n\r\nline one\r\nline two\r\n", "line one\nline two"),
    ("cr.txt", b"Old Mac text\r\rline one\rline two\r", "line one\nline two"),
])
def test_odd_encodings_are_read_as_text(kb: Path, tmp_path: Path, name: str, content: bytes,
                                        expected: str) -> None:
    folder = write_tree(tmp_path / "in", {"good.md": GOOD, name: content})
    got, doc = _outcome(_add(kb, folder), name)
    assert got == "added", doc
    source = (kb / "wiki" / "sources" / f"{doc}.md").read_text(encoding="utf-8")
    assert expected in source
    assert "\x00" not in source and "\ufeff" not in source and "\r" not in source
    assert api.search(str(kb), expected.split()[-1], Progress())


# -- size and depth ------------------------------------------------------------

@pytest.mark.parametrize(("name", "content"), [
    ("quotes.md", ">" * 100_000 + " deep\n"),
    ("lists.md", "- " * 100_000 + "deep\n"),
    ("ordered.md", "1. " * 100_000 + "deep\n"),
    ("quoted-lists.md", "> - " * 50_000 + "deep\n"),
    ("indented-lists.md", "".join("  " * i + "- item\n" for i in range(3000)) + "deep\n"),
    ("brackets.md", "[" * 100_000 + "deep" + "]" * 100_000 + "\n"),
    ("emphasis.md", "*" * 100_000 + "deep" + "_" * 100_000 + "\n"),
    ("divs.html", "<div>" * 100_000 + "<p>deep words here</p>"),
    ("nested-lists.html", "<ul><li>" * 100_000 + "deep"),
    ("nested-tables.html", "<table><tr><td>" * 30_000 + "deep"),
])
def test_deep_nesting_is_added_and_searchable(kb: Path, tmp_path: Path, name: str,
                                              content: str) -> None:
    folder = write_tree(tmp_path / "in", {"good.md": GOOD, name: content})
    start = time.perf_counter()
    got, doc = _outcome(_add(kb, folder), name)
    assert got == "added", doc
    assert time.perf_counter() - start < 30
    assert doc in {hit.doc for hit in api.search(str(kb), "deep", Progress())}


@pytest.mark.heavy
def test_a_50_mb_single_line_file_is_added_and_searchable(kb: Path, tmp_path: Path) -> None:
    words = " ".join(f"w{i % 5000}" for i in range(8_000_000))[:50_000_000]
    folder = write_tree(tmp_path / "in", {"good.md": GOOD, "long.txt": words + " needle\n"})
    start = time.perf_counter()
    got, doc = _outcome(_add(kb, folder, jobs=2), "long.txt")
    assert got == "added" and time.perf_counter() - start < 120
    assert api.search(str(kb), "needle", Progress())[0].doc == doc


def _bomb_pdf(inflated_mib: int) -> bytes:
    """A one-page PDF whose FlateDecode content stream inflates ~1000:1."""
    compressor = zlib.compressobj(9)
    block = b"(A) Tj " * (1 << 17)  # 896 KiB of text operators
    blocks = inflated_mib * 1048576 // len(block)
    stream = b"".join(compressor.compress(block) for _ in range(blocks)) + compressor.flush()
    return make_pdf(["x"], streams=[stream]).replace(
        b"<< /Length", b"<< /Filter /FlateDecode /Length", 1)


class _PeakRss:
    """Samples the resident memory of a process and all its children."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak_total_mib = 0.0
        self.peak_one_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            try:
                tree = [self.process, *self.process.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            sizes = []
            for proc in tree:
                with contextlib.suppress(psutil.NoSuchProcess):  # a worker just exited
                    sizes.append(proc.memory_info().rss / 1048576)
            self.peak_total_mib = max(self.peak_total_mib, sum(sizes))
            self.peak_one_mib = max([self.peak_one_mib, *sizes])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def bomb_pdf() -> bytes:
    return _bomb_pdf(1024)  # 1.5 MB on disk; ~7 s to build, so once per module


@pytest.mark.heavy
@pytest.mark.parametrize("jobs", [2, 1])
def test_a_decompression_bomb_is_bounded(kb: Path, tmp_path: Path, bomb_pdf: bytes,
                                         jobs: int) -> None:
    """A page whose content stream inflates to 1 GiB: pypdf's limits (and,
    with workers, the worker's memory limit) bound it; the run goes on. The
    RSS of openkb and its workers is sampled throughout."""
    folder = write_tree(tmp_path / "in", {"good.md": GOOD, "bomb.pdf": bomb_pdf})
    (kb / ".openkb" / "config.yaml").write_text("worker_memory_mb: 512\nconvert_timeout_s: 120\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENKB_")}
    env["PYTHONPATH"] = str(ROOT)
    cli = subprocess.Popen([sys.executable, "-m", "openkb", "--kb", str(kb), "add", "--json",
                            "--jobs", str(jobs), str(folder)], env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rss = _PeakRss(cli.pid)
    try:
        out, err = cli.communicate(timeout=300)
    finally:
        cli.kill()
        rss.stop()
    assert cli.returncode == 1, err
    report = json.loads(out)
    assert [a["name"] for a in report["added"]] == ["good"]
    [failure] = report["failed"]
    assert failure["file"].endswith("bomb.pdf")
    assert (("decompresses past" in failure["reason"] and "safety limit" in failure["reason"])
            or "ran out of memory" in failure["reason"]), failure
    # Measured: ~165 MiB for the largest process, ~280 MiB for all of them.
    assert rss.peak_one_mib < 512, rss.peak_one_mib
    assert rss.peak_total_mib < 1024, rss.peak_total_mib
    verify_ok(kb)


# -- special files and symlinks -----------------------------------------------

def test_symlinks_are_not_followed_out_of_the_input(kb: Path, tmp_path: Path) -> None:
    outside = write_tree(tmp_path / "outside", {"secret.md": markdown_doc("Secret", "keys")})
    folder = write_tree(tmp_path / "in", {
        "good.md": GOOD, "sub/inner.md": GOOD + "\ninner\n",
        ".private/linked.md": markdown_doc("Linked", "plums")})
    (folder / "escape.md").symlink_to(outside / "secret.md")
    (folder / "escape-dir").symlink_to(outside)
    (folder / "escape-relative.md").symlink_to("../outside/secret.md")
    (folder / "loop").symlink_to(folder)
    (folder / "sub" / "parent-loop").symlink_to("..")
    (folder / "sub" / "alias.md").symlink_to(folder / "sub" / "inner.md")
    (folder / "to-hidden.md").symlink_to(folder / ".private" / "linked.md")
    (folder / "dangling.md").symlink_to(folder / "nothing-here.md")
    (folder / "self.md").symlink_to("self.md")
    links = ("escape.md", "escape-dir", "escape-relative.md", "loop", "parent-loop", "alias.md",
             "to-hidden.md", "dangling.md", "self.md")
    report = _add(kb, folder)
    for name in links:
        assert _outcome(report, name) == ("skipped", "symlink"), name

    # Followed on request, but only inside the input directory, never in a loop.
    (kb / ".openkb" / "config.yaml").write_text("follow_symlinks: true\n")
    report = api.add(str(kb), [str(folder)], Progress(), jobs=1)
    verify_ok(kb)
    for name in ("escape.md", "escape-dir", "escape-relative.md", "loop", "parent-loop"):
        assert _outcome(report, name) == ("skipped", "symlink"), name
    # inner.md is in ("unchanged": the stat cache vouches for it, if not racily clean)
    assert _outcome(report, "alias.md") in (("skipped", "duplicate"), ("skipped", "unchanged"))
    assert _outcome(report, "to-hidden.md")[0] == "added"  # named by a link inside the input
    assert _outcome(report, "dangling.md")[0] == "failed"
    assert _outcome(report, "self.md")[0] == "failed"
    assert not any("secret" in name for name, _ in report.added)
    assert not api.search(str(kb), "keys", Progress())


def _run_cli_with_timeout(*args: str, timeout: float = 60) -> dict:
    try:
        result = run_openkb(*args, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"openkb {' '.join(args)} blocked for {timeout}s")
    return json.loads(result.stdout)


def test_fifos_sockets_and_devices_are_skipped_without_blocking(kb: Path,
                                                               tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "in", {"good.md": GOOD})
    os.mkfifo(folder / "pipe.md")
    os.mkfifo(tmp_path / "named-pipe.txt")
    (folder / "link-to-pipe.md").symlink_to(folder / "pipe.md")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "sock.md"))
    device: Path | None = folder / "null.md"
    try:
        os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except (PermissionError, OSError):
        device = None  # not root, or a filesystem without devices
    (kb / ".openkb" / "config.yaml").write_text("follow_symlinks: true\n")
    try:
        report = _run_cli_with_timeout("--kb", str(kb), "add", "--json", str(folder),
                                       str(tmp_path / "named-pipe.txt"))
    finally:
        server.close()
    skipped = {Path(s["file"]).name: s["reason"] for s in report["skipped"]}
    assert skipped["pipe.md"] == "special" and skipped["sock.md"] == "special"
    assert skipped["named-pipe.txt"] == "special"  # named on the command line: still not read
    assert skipped["link-to-pipe.md"] == "special"
    if device is not None:
        assert skipped["null.md"] == "special"
    assert [a["name"] for a in report["added"]] == ["good"] and not report["failed"]
    verify_ok(kb)


# -- files that change between scan and prepare ---------------------------------

class TestChangedAfterScan:
    limits = PrepareLimits(max_file_bytes=10 * 1048576, chunk_chars=1500, key_terms=10)

    def _task(self, path: Path, sha: str, staging: Path) -> PrepareTask:
        return PrepareTask(seq=0, path=str(path), display=path.name, sha256=sha,
                           size=path.stat().st_size if path.exists() else 0, name="moving",
                           kind="markdown", ext=".md", staging_prefix=str(staging))

    def test_a_file_edited_after_hashing_is_failed(self, tmp_path: Path) -> None:
        path = write_tree(tmp_path, {"moving.md": GOOD}) / "moving.md"
        sha = hash_file(str(path))
        path.write_text(GOOD + "\nedited after the scan\n")
        with pytest.raises(FileRejected, match="changed after it was scanned"):
            prepare_file(self._task(path, sha, tmp_path / "staging"), self.limits)
        assert not list(tmp_path.glob("staging.*"))

    def test_a_file_deleted_after_hashing_is_failed(self, tmp_path: Path) -> None:
        path = write_tree(tmp_path, {"moving.md": GOOD}) / "moving.md"
        task = self._task(path, hash_file(str(path)), tmp_path / "staging")
        path.unlink()
        with pytest.raises(FileRejected, match="vanished after it was scanned"):
            prepare_file(task, self.limits)

    def test_a_file_swapped_for_a_fifo_does_not_block(self, tmp_path: Path) -> None:
        path = write_tree(tmp_path, {"moving.md": GOOD}) / "moving.md"
        task = self._task(path, hash_file(str(path)), tmp_path / "staging")
        path.unlink()
        os.mkfifo(path)
        with pytest.raises(FileRejected, match="no longer a regular file"):
            prepare_file(task, self.limits)

    def test_a_file_swapped_for_a_symlink_is_not_followed(self, tmp_path: Path) -> None:
        path = write_tree(tmp_path, {"moving.md": GOOD, "other.md": GOOD}) / "moving.md"
        task = self._task(path, hash_file(str(path)), tmp_path / "staging")
        path.unlink()
        path.symlink_to(tmp_path / "other.md")  # same bytes, but not the file scanned
        with pytest.raises(FileRejected, match="cannot open"):
            prepare_file(task, self.limits)

    def test_the_unchanged_file_is_prepared(self, tmp_path: Path) -> None:
        path = write_tree(tmp_path, {"moving.md": GOOD}) / "moving.md"
        prepared = prepare_file(self._task(path, hash_file(str(path)), tmp_path / "staging"),
                                self.limits)
        assert prepared.info.title == "Good document"


# -- names ---------------------------------------------------------------------

def test_twins_and_odd_names_get_distinct_safe_names(kb: Path, tmp_path: Path) -> None:
    files = {
        "Notes.md": markdown_doc("Upper", "apples"),
        "notes.md": markdown_doc("Lower", "pears"),
        "caf\u00e9.md": markdown_doc("NFC", "plums"),
        "cafe\u0301.md": markdown_doc("NFD", "figs"),
        "new\nline.md": markdown_doc("Newline", "kiwis"),
        "tab\tand\x07bell\x1b[31m.md": markdown_doc("Control", "limes"),
        "index.md": markdown_doc("Index", "dates"),
        "log.md": markdown_doc("Log", "melons"),
        "CON.md": markdown_doc("Con", "lemons"),
        "aux.html": "<h1>Aux</h1><p>cherries and cherries</p>",
        "!!!.md": markdown_doc("Punctuation", "mangoes"),
        "\u202eevil.md": markdown_doc("Bidi", "papayas"),
        ("\u00e9" * 125) + ".md": markdown_doc("Long", "grapes"),  # 250 bytes of name
        "good.md": GOOD,
    }
    folder = write_tree(tmp_path / "in", files)
    report = _add(kb, folder)
    assert not report.failed and not report.skipped
    names = {Path(display).name: name for name, display in report.added}
    assert len(names) == len(files) and len(set(names.values())) == len(files)
    assert {names["Notes.md"], names["notes.md"]} == {"notes", "notes-2"}
    assert {names["caf\u00e9.md"], names["cafe\u0301.md"]} == {"café", "café-2"}
    assert names["new\nline.md"] == "new-line"
    assert names["tab\tand\x07bell\x1b[31m.md"] == "tab-and-bell-31m"
    assert names["index.md"] == "index-doc" and names["log.md"] == "log-doc"
    assert names["CON.md"] == "con-doc" and names["aux.html"] == "aux-doc"
    assert names["!!!.md"] == "document"
    for name in names.values():
        assert len(name.encode()) <= MAX_NAME_BYTES
        assert all(ch.isprintable() and ch not in "/\\\u202e" for ch in name), name
    assert (kb / "wiki" / "summaries" / f"{names[chr(233) * 125 + '.md']}.md").is_file()


def _make_deep_file(top: Path, level_name: str, levels: int, file_name: str,
                    content: str) -> None:
    """top/level_name/.../file_name, made one directory at a time (dir_fd), so
    the whole path may exceed PATH_MAX."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir(level_name, dir_fd=fd)
            inner = os.open(level_name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        out = os.open(file_name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, content.encode())
        os.close(out)
    finally:
        os.close(fd)


def test_names_over_255_bytes_and_paths_over_path_max(kb: Path, tmp_path: Path) -> None:
    """No filesystem here takes a name over 255 bytes, so the nearest inputs
    are a 250-byte name (above) and a path of long names over PATH_MAX."""
    with pytest.raises(OSError) as too_long:
        (tmp_path / ("\u00e9" * 150 + ".md")).write_text(GOOD)
    assert too_long.value.errno == errno.ENAMETOOLONG
    folder = write_tree(tmp_path / "in", {"good.md": GOOD, "shallow/ok.md": markdown_doc(
        "Shallow", "walnuts")})
    _make_deep_file(folder / "shallow", "\u00e9" * 120, 20, "deep.md",
                    markdown_doc("Deep", "hazelnuts"))
    report = _add(kb, folder)
    assert _outcome(report, "ok.md")[0] == "added"
    [failure] = report.failed
    assert failure.reason.endswith("File name too long")  # that directory only
    assert len(os.fsencode(failure.display)) > 4000


def test_names_that_are_not_utf8_fail_alone(kb: Path, tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "in", {"good.md": GOOD})
    latin1_name = os.fsdecode(os.fsencode(folder) + b"/caf\xe9.md")
    Path(latin1_name).write_text(markdown_doc("Latin-1 name", "quinces"))
    latin1_dir = os.fsdecode(os.fsencode(folder) + b"/d\xfcr")
    os.mkdir(latin1_dir)
    Path(latin1_dir, "inner.md").write_text(markdown_doc("Inside", "olives"))
    report = _add(kb, folder)
    failures = {f.display: f.reason for f in report.failed}
    assert failures == {
        f"{folder}/caf\\xe9.md": "file name is not valid UTF-8: rename it to add it",
        f"{folder}/d\\xfcr": "directory name is not valid UTF-8: rename it to add the files in it",
    }
    result = run_openkb("--kb", str(kb), "add", "--json", str(folder))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert {f["file"] for f in json.loads(result.stdout)["failed"]} == set(failures)


@pytest.mark.parametrize("command", ["show", "remove"])
def test_a_document_name_that_is_not_utf8_is_an_unknown_document(kb: Path,
                                                                 command: str) -> None:
    result = run_openkb("--kb", str(kb), command, os.fsdecode(b"caf\xe9"))
    assert "Traceback" not in result.stderr
    assert result.returncode == 2 and "no document named" in result.stderr
