"""The failure ledger: a file that failed for good is not tried again until
it changes; a transient failure is; the exit code counts only this run's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, markdown_doc, verify_ok, write_tree

from openkb.sync.ledger import is_permanent


def _age(path: Path) -> None:
    when = time.time_ns() - 3600 * 10**9
    os.utime(path, ns=(when, when))


def _failures(cli, kb: Path) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    result = cli("--kb", str(kb), "failures", "--json")
    assert result.code == 0, result.err
    return {Path(f["file"]).name: f for f in json.loads(result.out)}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "docs", {
        "good.md": markdown_doc("Good", "apples"),
        "broken.pdf": b"this is not a PDF at all, just bytes named like one\n",
        "empty.md": "",
    })


def test_a_permanent_failure_is_remembered_and_not_tried_again(cli, kb: Path,
                                                               folder: Path) -> None:  # type: ignore[no-untyped-def]
    first = cli("--kb", str(kb), "sync", "--json", str(folder))
    assert first.code == 1
    assert {Path(f["file"]).name for f in json.loads(first.out)["failed"]} == {
        "broken.pdf", "empty.md"}
    ledger = _failures(cli, kb)
    assert set(ledger) == {"broken.pdf", "empty.md"}
    assert ledger["broken.pdf"]["permanent"] and ledger["broken.pdf"]["tries"] == 1
    assert "not a PDF" in ledger["broken.pdf"]["reason"]
    status = cli("--kb", str(kb), "status")
    assert "2 file(s) failed" in status.out
    # Unchanged: skipped with a reason, and the run succeeds.
    again = cli("--kb", str(kb), "sync", str(folder))
    assert again.code == 0, again.out
    assert "skipped 2: failed before" in again.out and "--retry-failed" in again.out
    assert cli("--kb", str(kb), "add", str(folder)).code == 0  # add consults it too
    # --retry-failed tries them: they fail again, counted in this run.
    retried = cli("--kb", str(kb), "sync", "--retry-failed", str(folder))
    assert retried.code == 1
    assert _failures(cli, kb)["broken.pdf"]["tries"] == 2
    # A changed file is tried again; one that gets in leaves the ledger.
    (folder / "empty.md").write_text(markdown_doc("Empty no more", "pears"))
    fixed = cli("--kb", str(kb), "sync", "--json", str(folder))
    assert fixed.code == 0
    assert [a["name"] for a in json.loads(fixed.out)["added"]] == ["empty"]
    assert set(_failures(cli, kb)) == {"broken.pdf"}
    # A file that vanishes leaves it too.
    (folder / "broken.pdf").unlink()
    assert cli("--kb", str(kb), "sync", str(folder)).code == 0
    assert _failures(cli, kb) == {}
    assert "failed" not in cli("--kb", str(kb), "status").out
    verify_ok(kb)


def test_a_transient_failure_is_tried_again(cli, kb: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (kb / ".openkb" / "config.yaml").write_text("convert_timeout_s: 1\n")
    docs = write_tree(tmp_path / "slow", {"slow.md": "# Slow\n\n" + "- item\n" * 1_500_000})
    _age(docs / "slow.md")
    assert cli("--kb", str(kb), "sync", "--jobs", "1", str(docs)).code == 1
    ledger = _failures(cli, kb)
    assert not ledger["slow.md"]["permanent"]
    again = cli("--kb", str(kb), "sync", "--jobs", "1", str(docs))
    assert again.code == 1 and "timed out" in again.out
    assert _failures(cli, kb)["slow.md"]["tries"] == 2


def test_what_counts_as_permanent() -> None:
    for reason in ("malformed PDF: truncated (no end-of-file marker)", "empty file (0 bytes)",
                   "PDF needs a password", "named .pdf but is not a PDF (looks like text)",
                   "no text after conversion", "too large: 300.0 MiB (limit max_file_mb = 256)"):
        assert is_permanent(reason), reason
    for reason in ("timed out after 120s (convert_timeout_s)", "ran out of memory while "
                   "converting", "worker process died (killed by signal SIGKILL)",
                   "cannot stage it: No space left on device", "cannot read: Input/output error",
                   "add failed and was rolled back: disk I/O error"):
        assert not is_permanent(reason), reason


# -- what the scan itself cannot read ------------------------------------------

def _unprivileged(kb: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """openkb as a real process that file permissions apply to: as root,
    without the capabilities that let root read anything (setpriv)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENKB_")}
    env["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-m", "openkb", "--kb", str(kb), *args]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root, and no setpriv to drop CAP_DAC_OVERRIDE with")
        command = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *command]
    return subprocess.run(command, env=env, text=True, capture_output=True, timeout=120)


def test_what_the_scan_cannot_read_is_in_the_ledger_until_it_can(kb: Path,
                                                                 tmp_path: Path) -> None:
    folder = write_tree(tmp_path / "docs", {
        "good.md": markdown_doc("Good", "apples"),
        "locked/secret.md": markdown_doc("Secret", "pears"),
        "closed/hidden-away.md": markdown_doc("Away", "plums"),
    })
    (folder / "locked").chmod(0o444)  # its names can be listed, its files not stat'ed
    (folder / "closed").chmod(0o000)  # not even listed
    try:
        for tries in (1, 2):
            synced = _unprivileged(kb, "sync", "--json", str(folder))
            assert synced.returncode == 1, synced.stderr  # this run's failures count
            failed = {Path(f["file"]).name: f["reason"]
                      for f in json.loads(synced.stdout)["failed"]}
            assert failed == {"secret.md": "cannot read: Permission denied",
                              "closed": "cannot list: Permission denied"}
            listed = _unprivileged(kb, "failures", "--json")
            ledger = {Path(f["file"]).name: f for f in json.loads(listed.stdout)}
            assert set(ledger) == {"secret.md", "closed"}
            assert ledger["secret.md"]["file"] == str(folder / "locked" / "secret.md")
            for entry in ledger.values():  # the file may be readable next time
                assert not entry["permanent"] and entry["tries"] == tries
        text = _unprivileged(kb, "failures")
        assert "cannot read: Permission denied" in text.stdout and "transient" in text.stdout
        assert _unprivileged(kb, "add", str(folder)).returncode == 1  # add keeps count too
        ledger = json.loads(_unprivileged(kb, "failures", "--json").stdout)
        assert sorted(entry["tries"] for entry in ledger) == [3, 3]
    finally:
        (folder / "locked").chmod(0o755)
        (folder / "closed").chmod(0o755)
    fixed = _unprivileged(kb, "sync", "--json", str(folder))
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert {a["name"] for a in json.loads(fixed.stdout)["added"]} == {"secret", "hidden-away"}
    assert json.loads(_unprivileged(kb, "failures", "--json").stdout) == []
    verify_ok(kb)
