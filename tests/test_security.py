"""Nothing outside the KB root is ever written, deleted or restored, whatever a
journal, an input name or the KB's own tree says.

A tampered journal is refused with a clear message, left in place, and reads
go on working. Directories of the KB replaced by symlinks that lead out are
never written through. Files get the user's umask. Hostile file names become
safe document names inside raw/ and wiki/.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT, markdown_doc, openkb_in_process, write_tree

from openkb import api
from openkb.errors import JournalRefused
from openkb.progress import Progress

TXID = "00000000000000aa00000001"


def _snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (not following symlinks) and its content hash."""
    entries = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                entries[rel] = f"-> {os.readlink(path)}"
            elif path.is_file():
                entries[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                entries[rel] = "dir"
    return entries


def _kb_snapshot(kb: Path) -> dict[str, str]:
    """The KB's user-visible tree and registry file, byte for byte."""
    snap = {f"{area}/{k}": v for area in ("raw", "wiki", "attic") if (kb / area).exists()
            for k, v in _snapshot(kb / area).items()}
    snap["kb.sqlite"] = hashlib.sha256((kb / ".openkb" / "kb.sqlite").read_bytes()).hexdigest()
    return snap


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A directory outside the KB that must come through every test untouched."""
    outside = write_tree(tmp_path / "outside", {"precious.txt": "precious",
                                                "notes.md": "# my notes\n",
                                                "keep/more.md": "# more notes\n",
                                                "b1": "a file that happens to be named b1"})
    return outside


@pytest.fixture
def filled(kb: Path, tmp_path: Path) -> Path:
    docs = write_tree(tmp_path / "docs", {
        "one.md": markdown_doc("One", "apples", "pears"),
        "two.md": markdown_doc("Two", "apples", "pears"),
        "three.md": markdown_doc("Three", "plums"),
    })
    assert not api.add(str(kb), [str(docs)], Progress(), jobs=1).failed
    return kb


# -- tampered journals ------------------------------------------------------------


def _journal(kb: Path, **overrides: object) -> Path:
    record = {"version": 1, "txid": TXID, "status": "active", "op": "add", "docs": ["x"],
              "created": "", "pid": 1, "staging": [], "actions": []}
    record.update(overrides)
    path = kb / ".openkb" / "journal" / f"{TXID}.json"
    path.write_text(json.dumps(record))
    return path


def _writers(kb: Path, victim: Path) -> dict[str, Callable[[], object]]:
    return {
        "add": lambda: api.add(str(kb), [str(victim)], Progress(), jobs=1),
        "recover": lambda: api.recover(str(kb), Progress()),
        "remove": lambda: api.remove(str(kb), ["one"], Progress()),
        "recompile": lambda: api.recompile(str(kb), Progress()),
        "verify --repair": lambda: api.verify(str(kb), Progress(), repair=True),
    }


def _refused(kb: Path, victim: Path, journal: Path, why: str) -> None:
    """Every writing command refuses, names the reason, leaves the journal;
    `verify` reports it; reads work; nothing inside or outside the KB changed."""
    outside, inside = _snapshot(victim), _kb_snapshot(kb)
    journal_bytes = journal.read_bytes()
    for command, call in _writers(kb, victim).items():
        with pytest.raises(JournalRefused) as refused:
            call()
        message = str(refused.value)
        assert "refusing journal" in message and why in message, (command, message)
    assert "journal" in {p.code for p in api.verify(str(kb), Progress()).problems}
    assert len(api.list_documents(str(kb), Progress())) == 3  # reads still work
    status = api.status(str(kb), Progress())
    assert status.pending_journals == 1 and len(status.refused_journals) == 1
    assert "refusing journal" in status.refused_journals[0]
    assert api.search(str(kb), "apples", Progress())
    assert _snapshot(victim) == outside
    assert _kb_snapshot(kb) == inside
    assert journal.read_bytes() == journal_bytes


def test_the_cli_says_why_it_refuses_and_exits_1(filled: Path, victim: Path) -> None:
    journal = _journal(filled, actions=[{"kind": "rewrite", "target": "../outside/precious.txt",
                                         "backup": None}])
    for args in (["add", str(victim)], ["recover"], ["remove", "one"]):
        result = openkb_in_process("--kb", str(filled), *args)
        assert result.code == 1, (args, result.err)
        assert "refusing journal" in result.err and "outside the KB" in result.err
        assert "hint:" in result.err and "Traceback" not in result.err
    assert openkb_in_process("--kb", str(filled), "list").code == 0
    assert journal.exists() and (victim / "precious.txt").read_text() == "precious"


@pytest.mark.parametrize(("action", "why"), [
    ({"kind": "publish", "target": "/tmp/x.md", "staged": ".openkb/staging/r/1/raw.md"},
     "outside the KB"),
    ({"kind": "rewrite", "target": "../outside/precious.txt", "backup": None},
     "outside the KB"),
    ({"kind": "rewrite", "target": "wiki/../../outside/precious.txt", "backup": "b1"},
     "outside the KB"),
    ({"kind": "stash", "target": "raw/../../outside/precious.txt", "backup": "b1"},
     "outside the KB"),
    ({"kind": "stash", "target": "raw/a.md", "backup": "../../../outside/precious.txt"},
     "bad backup name"),
    ({"kind": "stash", "target": "raw/a.md", "backup": "/tmp"}, "bad backup name"),
    ({"kind": "publish", "target": "raw/a.md", "staged": "../outside/precious.txt"},
     "outside the KB"),
    ({"kind": "publish", "target": "raw/a.md", "staged": "raw/one.md"}, "outside the areas"),
    ({"kind": "publish", "target": "raw/one.md", "staged": ".openkb/staging/r/raw.md",
      "after_stash": "../../b1"}, "bad backup name"),
    ({"kind": "attic", "target": "raw/one.md", "attic": "../outside/one.md"}, "outside the KB"),
    ({"kind": "append", "target": ".openkb/kb.sqlite", "size": 0}, "outside the areas"),
    ({"kind": "append", "target": "wiki/log.md", "size": -1}, "bad size"),
    ({"kind": "rewrite", "target": "wiki/index.md\x00", "backup": None}, "malformed path"),
    ({"kind": "chmod", "target": "raw/a.md"}, "unknown action"),
    ({"target": "raw/a.md"}, "unknown action"),
    ({"kind": "rewrite"}, "malformed action"),
])
def test_tampered_actions_are_refused(filled: Path, victim: Path, action: dict,
                                      why: str) -> None:
    _refused(filled, victim, _journal(filled, actions=[action]), why)


@pytest.mark.parametrize(("overrides", "why"), [
    ({"version": 2}, "version 2"),
    ({"version": "1"}, "version '1'"),
    ({"version": None}, "version None"),
    ({"txid": "../../x"}, "malformed txid"),
    ({"txid": "00000000000000aa00000002"}, "does not match its txid"),
    ({"staging": ["../outside"]}, "outside the KB"),
    ({"staging": ["raw"]}, "outside the areas"),
    ({"status": "weird"}, "unknown status"),
    ({"actions": "raw/one.md"}, "unknown action"),
])
def test_untrusted_journals_are_refused(filled: Path, victim: Path, overrides: dict,
                                        why: str) -> None:
    _refused(filled, victim, _journal(filled, **overrides), why)


def test_a_journal_through_a_symlinked_directory_is_refused(filled: Path, victim: Path) -> None:
    """wiki/concepts replaced by a link out; the journal names a file "in" it."""
    concepts = filled / "wiki" / "concepts"
    shutil.rmtree(concepts)
    concepts.symlink_to(victim)
    for action in ({"kind": "rewrite", "target": "wiki/concepts/precious.txt", "backup": None},
                   {"kind": "publish", "target": "wiki/concepts/x.md",
                    "staged": ".openkb/staging/r/1/x.md"},
                   {"kind": "append", "target": "wiki/concepts/precious.txt", "size": 0}):
        _refused(filled, victim, _journal(filled, actions=[action]), "resolves outside the KB")


def test_a_journal_naming_a_symlink_is_refused(filled: Path, victim: Path) -> None:
    """log.md replaced by a link to a file outside: rollback's truncate must
    not follow it."""
    log = filled / "wiki" / "log.md"
    log.unlink()
    log.symlink_to(victim / "precious.txt")
    journal = _journal(filled, actions=[{"kind": "append", "target": "wiki/log.md", "size": 0}])
    _refused(filled, victim, journal, "is a symlink")


def test_a_symlinked_backup_dir_is_not_restored_from(filled: Path, victim: Path) -> None:
    (filled / ".openkb" / "journal" / TXID).symlink_to(victim)
    _journal(filled, actions=[{"kind": "stash", "target": "raw/stolen.md", "backup": "b1"}])
    before = _snapshot(victim)
    result = openkb_in_process("--kb", str(filled), "recover")
    assert _snapshot(victim) == before
    assert not (filled / "raw" / "stolen.md").exists()
    assert result.code != 0 and "refusing journal" in result.err


# -- symlinks in the KB's own tree --------------------------------------------------


def _link_out(kb: Path, area: str, victim: Path) -> None:
    """Replace ``area`` with a symlink to ``victim``, moving its files there
    (what a user relocating a folder would do)."""
    path = kb / area
    if path.is_dir():
        for entry in path.iterdir():
            shutil.move(str(entry), victim / entry.name)
        path.rmdir()
    path.symlink_to(victim)


def _orphan_and_repair(kb: Path, tmp_path: Path) -> list[str]:
    (kb / "raw" / "stray.md").write_text("# stray\n")
    return ["verify", "--repair"]


def _add_one(kb: Path, tmp_path: Path) -> list[str]:
    docs = write_tree(tmp_path / "more", {"four.md": markdown_doc("Four", "apples", "quinces")})
    return ["add", str(docs)]


SYMLINKED_AREAS = [
    pytest.param(".openkb/staging", lambda kb, tmp: ["recompile"]),
    pytest.param(".openkb/runs", _add_one),
    pytest.param(".openkb/journal", _add_one),
    pytest.param("wiki/concepts", lambda kb, tmp: ["recompile"]),
    pytest.param("raw", _add_one),
    pytest.param("attic", lambda kb, tmp: ["remove", "--keep-raw", "one"]),
    pytest.param(".openkb/quarantine", _orphan_and_repair),
    pytest.param("wiki/log.md", _add_one),
]


@pytest.mark.parametrize(("area", "command"), SYMLINKED_AREAS)
def test_a_symlinked_part_of_the_kb_is_not_written_through(
        filled: Path, victim: Path, tmp_path: Path, area: str, command) -> None:
    if area == "wiki/log.md":
        shutil.copy(filled / area, victim / "log.md")
        (filled / area).unlink()
        (filled / area).symlink_to(victim / "log.md")
    else:
        if not (filled / area).exists():
            (filled / area).mkdir()
        _link_out(filled, area, victim)
    args = command(filled, tmp_path)
    before = _snapshot(victim)
    result = openkb_in_process("--kb", str(filled), *args)
    assert "Traceback" not in result.err, result.err
    assert _snapshot(victim) == before, (result.code, result.out + result.err)
    assert result.code == 1 and f"{area} in the KB" in result.err, result.err
    assert "is a symlink" in result.err
    assert openkb_in_process("--kb", str(filled), "list").code == 0
    verified = openkb_in_process("--kb", str(filled), "verify", "--json")
    assert verified.code == 1
    problems = json.loads(verified.out)["problems"]
    assert any(p["code"] == "symlink" and p["path"] == area for p in problems), problems


def test_symlinks_inside_an_area_are_not_followed_by_repair(filled: Path, victim: Path) -> None:
    """An orphan that is a symlink to a file outside: repair neither moves
    nor reads through it, and says so."""
    (filled / "raw" / "link.md").symlink_to(victim / "precious.txt")
    before = _snapshot(victim)
    result = openkb_in_process("--kb", str(filled), "verify", "--repair")
    assert result.code == 1
    assert "raw/link.md" in result.out + result.err and "Traceback" not in result.err
    assert _snapshot(victim) == before


# -- umask ---------------------------------------------------------------------------


def _openkb_with_umask(umask: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENKB_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "openkb", *args], env=env, text=True,
                          capture_output=True, timeout=120, preexec_fn=lambda: os.umask(umask))


@pytest.mark.parametrize("umask", [0o027, 0o077])
def test_files_are_created_with_the_users_umask(tmp_path: Path, umask: int) -> None:
    docs = write_tree(tmp_path / "docs", {"one.md": markdown_doc("One", "apples", "pears"),
                                          "two.md": markdown_doc("Two", "apples", "pears"),
                                          "three.md": markdown_doc("Three", "plums")})
    for path in docs.iterdir():
        path.chmod(0o644)  # the inputs' own modes must not leak into the KB
    kb = tmp_path / "kb"
    assert _openkb_with_umask(umask, "init", str(kb)).returncode == 0
    assert _openkb_with_umask(umask, "--kb", str(kb), "add", str(docs)).returncode == 0
    assert _openkb_with_umask(umask, "--kb", str(kb), "remove", "--keep-raw",
                              "three").returncode == 0
    (kb / "raw" / "stray.md").write_text("# stray\n")
    assert _openkb_with_umask(umask, "--kb", str(kb), "verify", "--repair").returncode == 0
    checked = {"raw": 0, "wiki": 0, ".openkb": 0, "attic": 0}
    for path in [kb, *kb.rglob("*")]:
        if path.name == "stray.md":
            continue  # made by the test, under the test's umask
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode & umask == 0, f"{path}: {oct(mode)} under umask {oct(umask)}"
        top = path.relative_to(kb).parts[0] if path != kb else None
        if top in checked:
            checked[top] += 1
    assert all(count > 1 for count in checked.values()), checked
    assert (kb / "attic" / "three.md").is_file()


# -- hostile names -------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "a\u2215b.md",  # division slash
    "a\u2044b.md",  # fraction slash
    "a\uff0fb.md",  # fullwidth solidus (NFKC: "/")
    "\uff0e\uff0e\uff0fx.md",  # fullwidth "../x" (NFKC)
    "a\\..\\..\\x.md",  # backslashes are ordinary characters on POSIX
    "\u2024\u2024.md",  # one-dot leaders
    "new\nline.md", "tab\there.md", "esc\x1b[31m.md",
    "CON.md", "index.md", "log.md", "-rf.md", " .md", "a..md", "\u202eevil.md",
])
def test_hostile_file_names_stay_inside(kb: Path, tmp_path: Path, name: str) -> None:
    docs = write_tree(tmp_path / "docs", {name: markdown_doc("Hostile", "apples")})
    result = openkb_in_process("--kb", str(kb), "add", str(docs))
    assert result.code == 0, result.out + result.err
    listing = json.loads(openkb_in_process("--kb", str(kb), "list", "--json").out)
    assert len(listing) == 1
    doc = listing[0]["name"]
    assert doc.isprintable() and not {"/", "\\", "\u2215", "\u2044", "\uff0f"} & set(doc)
    assert doc.strip(".-") == doc and doc not in ("index", "log", "con")
    for area, suffix in (("raw", ".md"), ("wiki/sources", ".md"), ("wiki/summaries", ".md")):
        assert [p.name for p in (kb / area).iterdir()] == [doc + suffix]
    outside = {p for p in tmp_path.rglob("*") if kb not in p.parents and p != kb}
    assert outside == {docs, docs / name}


def test_dot_names_are_hidden_files_and_skipped(kb: Path, tmp_path: Path) -> None:
    docs = write_tree(tmp_path / "docs", {"..md": "x", "...md": "y", ".secret.md": "z",
                                          "ok.md": markdown_doc("Ok", "apples")})
    report = json.loads(openkb_in_process("--kb", str(kb), "add", "--json", str(docs)).out)
    assert [a["name"] for a in report["added"]] == ["ok"]
    assert {s["reason"] for s in report["skipped"]} == {"hidden"}
    # Named one by one they are still not added, and nothing escapes.
    named = json.loads(openkb_in_process("--kb", str(kb), "add", "--json", str(docs / "..md"),
                                         str(docs / "...md")).out)
    assert not named["added"] and len(named["skipped"]) == 2
    assert sorted(p.name for p in (kb / "raw").iterdir()) == ["ok.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "kb"]
