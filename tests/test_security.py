"""Nothing outside the KB root is ever written, deleted or restored, whatever a
journal, an input name or the config says."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, markdown_doc, run_openkb, write_tree

TXID = "00000000000000aa00000001"


def _journal(kb: Path, **overrides: object) -> Path:
    record = {"version": 1, "txid": TXID, "status": "active", "op": "add", "docs": ["x"],
              "created": "", "pid": 1, "staging": [], "actions": []}
    record.update(overrides)
    path = kb / ".openkb" / "journal" / f"{TXID}.json"
    path.write_text(json.dumps(record))
    return path


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("precious")
    return outside


def _refused(kb: Path, victim: Path, journal: Path, why: str) -> None:
    for args in (["add", str(victim)], ["recover"], ["remove", "x"]):
        result = run_openkb("--kb", str(kb), *args)
        assert result.returncode != 0, args
        assert "refusing journal" in result.stderr and why in result.stderr, result.stderr
    assert run_openkb("--kb", str(kb), "list").returncode == 0  # reads still work
    assert (victim / "precious.txt").read_text() == "precious"
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]
    assert journal.exists()


@pytest.mark.parametrize(("action", "why"), [
    ({"kind": "publish", "target": "/tmp/x.md", "staged": ".openkb/staging/r/1/raw.md"},
     "outside the KB"),
    ({"kind": "rewrite", "target": "../outside/precious.txt", "backup": None},
     "outside the KB"),
    ({"kind": "stash", "target": "raw/../../outside/precious.txt", "backup": "b1"},
     "outside the KB"),
    ({"kind": "stash", "target": "raw/a.md", "backup": "../../../outside/precious.txt"},
     "bad backup name"),
    ({"kind": "publish", "target": "raw/a.md", "staged": "../outside/precious.txt"},
     "outside the KB"),
    ({"kind": "append", "target": ".openkb/kb.sqlite", "size": 0}, "outside the areas"),
    ({"kind": "chmod", "target": "raw/a.md"}, "unknown action"),
])
def test_tampered_actions_are_refused(kb: Path, victim: Path, action: dict, why: str) -> None:
    _refused(kb, victim, _journal(kb, actions=[action]), why)


def test_a_symlink_inside_the_kb_pointing_out_is_not_followed(kb: Path, victim: Path) -> None:
    concepts = kb / "wiki" / "concepts"
    concepts.rmdir()
    concepts.symlink_to(victim)
    journal = _journal(kb, actions=[{"kind": "rewrite", "target": "wiki/concepts/precious.txt",
                                     "backup": None}])
    _refused(kb, victim, journal, "resolves outside the KB")


@pytest.mark.parametrize(("overrides", "why"), [
    ({"version": 2}, "version 2"),
    ({"txid": "../../x"}, "malformed txid"),
    ({"staging": ["../outside"]}, "outside the KB"),
    ({"status": "weird"}, "unknown status"),
])
def test_untrusted_journals_are_refused(kb: Path, victim: Path, overrides: dict,
                                        why: str) -> None:
    _refused(kb, victim, _journal(kb, **overrides), why)


def test_an_unreadable_journal_is_refused(kb: Path, victim: Path) -> None:
    journal = kb / ".openkb" / "journal" / f"{TXID}.json"
    journal.write_text('{"version": 1, "txid": ')
    _refused(kb, victim, journal, "unreadable")


def test_files_are_created_with_the_users_umask(tmp_path: Path) -> None:
    docs = write_tree(tmp_path / "docs", {"one.md": markdown_doc("One", "apples", "pears"),
                                          "two.md": markdown_doc("Two", "apples", "pears")})
    kb = tmp_path / "kb"
    script = (f"import os, sys; os.umask(0o027); sys.argv = ['openkb', 'init', {str(kb)!r}]; "
              "from openkb.cli.app import main; main()")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert subprocess.run([sys.executable, "-c", script], env=env).returncode == 0
    script = script.replace(f"'init', {str(kb)!r}", f"'--kb', {str(kb)!r}, 'add', "
                                                    f"{str(docs)!r}")
    assert subprocess.run([sys.executable, "-c", script], env=env).returncode == 0
    files = [p for p in kb.rglob("*") if p.is_file() and p.name != "lock"]
    assert len(files) > 8
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o027 == 0, path


@pytest.mark.parametrize("name", ["a\u2215b.md", "new\nline.md", "CON.md", "index.md",
                                  "-rf.md", " .md", "a..md", "\u202eevil.md"])
def test_hostile_file_names_stay_inside(kb: Path, tmp_path: Path, name: str) -> None:
    docs = write_tree(tmp_path / "docs", {name: markdown_doc("Hostile", "apples")})
    result = run_openkb("--kb", str(kb), "add", str(docs))
    assert result.returncode == 0, result.stdout + result.stderr
    listing = json.loads(run_openkb("--kb", str(kb), "list", "--json").stdout)
    assert len(listing) == 1
    doc = listing[0]["name"]
    assert "/" not in doc and "\n" not in doc and doc not in ("index", "log", "con", "..")
    assert (kb / "wiki" / "summaries" / f"{doc}.md").is_file()
    outside = {p for p in tmp_path.rglob("*") if kb not in p.parents and p != kb}
    assert outside == {docs, docs / name}


def test_dot_names_are_hidden_files_and_skipped(kb: Path, tmp_path: Path) -> None:
    docs = write_tree(tmp_path / "docs", {"..md": "x", "...md": "y", ".secret.md": "z",
                                          "ok.md": markdown_doc("Ok", "apples")})
    report = json.loads(run_openkb("--kb", str(kb), "add", "--json", str(docs)).stdout)
    assert [a["name"] for a in report["added"]] == ["ok"]
    assert {s["reason"] for s in report["skipped"]} == {"hidden"}
