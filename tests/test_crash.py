"""Crash safety, shown by killing real processes at every crash point.

For each point: SIGKILL an `openkb add` (or `remove`) there, run some other
command (which must finish the transaction), check `openkb verify`, check
that each document is wholly present or wholly absent, then re-run the
command and compare the KB with one built without a crash.

Only the commands that crash are real processes (a crash point SIGKILLs
the process it is reached in). What follows a crash runs in this process:
the next command through the CLI, the checks through the library (the same
code as `openkb list`, `verify`, `debug tree-hash`), without paying for an
interpreter start-up each, and an exception that escapes them fails the
test at once.

The same enumeration runs under the power-loss model (see
openkb/powerloss.py) in both its extremes: ``OPENKB_POWERLOSS=1`` drops
every change that was not fsynced at the crash point; ``torn`` keeps every
rename and create but cuts the unsynced data behind them. A kill -9 alone
cannot catch a missing fsync, and the first mode alone cannot catch a
rename over data that was never fsynced (it found the empty journal of
issue 9: `git show 8ce9c5c` had it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import (
    Run,
    markdown_doc,
    openkb_in_process,
    run_openkb,
    tree_hash,
    verify_ok,
    write_tree,
)

from openkb import api
from openkb.crashpoints import CRASHPOINTS
from openkb.progress import Progress

pytestmark = pytest.mark.heavy

COMMIT_POINTS = [p for p in CRASHPOINTS if not p.startswith(("rollback.", "recovery."))]
# Read-only or idempotent, so the KB can be compared with a crash-free one.
# A mutating next command is covered by test_next_add_after_a_crash.
NEXT_COMMANDS = (["list", "--json"], ["status"], ["search", "apples"], ["recover"],
                 ["remove", "--dry-run", "base-one"], ["show", "base-two"])


def _inputs(root: Path) -> tuple[Path, Path, Path]:
    base = write_tree(root / "base", {
        "base-one.md": markdown_doc("Base one", "apples", "shared topic"),
        "base-two.md": markdown_doc("Base two", "pears", "shared topic"),
    })
    new = write_tree(root / "new", {
        "new-one.md": markdown_doc("New one", "apples", "shared topic", "cherries"),
        "new-two.txt": "New two\n\nplain text about pears and pears and cherries, cherries.\n",
    })
    extra = write_tree(root / "extra", {"extra.md": markdown_doc("Extra", "bananas")})
    return base, new, extra


def _crash(kb: Path, *args: str, point: str, env: dict[str, str] | None = None) -> int:
    """Run openkb as a real process that SIGKILLs itself at ``point``;
    return its exit code (-9 if the point was reached)."""
    result = run_openkb("--kb", str(kb), "--quiet", *args,
                        env={"OPENKB_CRASH_AT": point, **(env or {})})
    assert result.returncode in (-9, 0), result.stderr
    return result.returncode


def _openkb(kb: Path, *args: str) -> Run:
    """A command after the crash, in this process."""
    return openkb_in_process("--kb", str(kb), "--quiet", *args)


def _add(kb: Path, docs: Path) -> None:
    assert not api.add(str(kb), [str(docs)], Progress(), jobs=1).failed


def _docs(kb: Path) -> set[str]:
    return {row.name for row in api.list_documents(str(kb), Progress())}


def _hash(kb: Path) -> str:
    return tree_hash(kb)


def _verify(kb: Path) -> None:
    verify_ok(kb)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Inputs, a KB template holding the base docs, and reference hashes."""
    root = tmp_path_factory.mktemp("crash")
    base, new, extra = _inputs(root)
    template = root / "template"
    api.init(str(template))
    _add(template, base)
    after_add = root / "after-add"
    shutil.copytree(template, after_add)
    _add(after_add, new)
    after_remove = root / "after-remove"
    shutil.copytree(after_add, after_remove)
    assert [r.name for r in api.remove(str(after_remove), ["base-one", "new-two"],
                                       Progress()).removed] == ["base-one", "new-two"]
    return {"template": template, "new": new, "extra": extra,
            "add_hash": _hash(after_add), "remove_hash": _hash(after_remove),
            "after_add": after_add}


def _next_command(i: int) -> list[str]:
    return NEXT_COMMANDS[i % len(NEXT_COMMANDS)]


def _crash_then_recover(kb: Path, command: list[str], point: str, env: dict[str, str],
                        next_command: list[str]) -> bool:
    """Run ``command`` crashing at ``point``; run ``next_command``; return
    whether the crash happened."""
    code = _crash(kb, *command, point=point, env=env)
    following = _openkb(kb, *next_command)
    # 2: `remove --dry-run` of a document the crashed remove did take away.
    assert following.code in (0, 1, 2), following.err
    return code == -9


MODES = {"kill": {}, "powerloss": {"OPENKB_POWERLOSS": "1"},
         "torn": {"OPENKB_POWERLOSS": "torn"}}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("point", COMMIT_POINTS)
def test_add_crash_at_every_point(world: dict, tmp_path: Path, point: str, mode: str) -> None:
    kb = tmp_path / "kb"
    shutil.copytree(world["template"], kb)
    i = COMMIT_POINTS.index(point)
    crashed = _crash_then_recover(kb, ["add", "--jobs", "1", str(world["new"])], point,
                                  MODES[mode], _next_command(i))
    assert crashed, f"{point} was never reached by add"
    _verify(kb)
    # One transaction for both new documents (a group): both or neither.
    assert _docs(kb) in ({"base-one", "base-two"},
                         {"base-one", "base-two", "new-one", "new-two"})
    rerun = _openkb(kb, "add", "--jobs", "1", str(world["new"]))
    assert rerun.code == 0, rerun.err
    _verify(kb)
    assert _hash(kb) == world["add_hash"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("point", COMMIT_POINTS)
def test_remove_crash_at_every_point(world: dict, tmp_path: Path, point: str, mode: str) -> None:
    kb = tmp_path / "kb"
    shutil.copytree(world["after_add"], kb)
    i = COMMIT_POINTS.index(point)
    crashed = _crash_then_recover(kb, ["remove", "base-one", "new-two"], point, MODES[mode],
                                  _next_command(i + 1))
    assert crashed, f"{point} was never reached by remove"
    _verify(kb)
    docs = _docs(kb)
    assert docs in ({"base-two", "new-one"}, {"base-one", "base-two", "new-one", "new-two"}), docs
    if "base-one" in docs:
        assert _openkb(kb, "remove", "base-one", "new-two").code == 0
    _verify(kb)
    assert _hash(kb) == world["remove_hash"]


@pytest.mark.parametrize("point", ["publish.file:2", "compile.after", "registry_write.after"])
def test_next_add_after_a_crash(world: dict, tmp_path: Path, point: str) -> None:
    """A writing command is a "next command" too: it recovers, then does its job."""
    kb = tmp_path / "kb"
    shutil.copytree(world["template"], kb)
    assert _crash(kb, "add", str(world["new"]), point=point) == -9
    assert _openkb(kb, "add", str(world["extra"])).code == 0
    _verify(kb)
    assert "extra" in _docs(kb)


@pytest.mark.parametrize("point", COMMIT_POINTS)
def test_update_crash_at_every_point(world: dict, tmp_path: Path, point: str) -> None:
    """An edited file added again replaces its document: old or new, never neither."""
    kb = tmp_path / "kb"
    shutil.copytree(world["template"], kb)
    inputs = tmp_path / "inputs"
    shutil.copytree(world["new"], inputs)
    _add(kb, inputs)
    source = api.show(str(kb), "new-one", Progress()).source_path
    old_source = source.read_text()
    (inputs / "new-one.md").write_text(markdown_doc("New one, edited", "apples", "figs"))
    assert _crash(kb, "add", str(inputs), point=point) == -9, (
        f"{point} was never reached by the update")
    assert _openkb(kb, "list").code == 0
    _verify(kb)
    now = source.read_text()
    assert now == old_source or "figs" in now
    assert _openkb(kb, "add", str(inputs)).code == 0
    _verify(kb)
    assert "figs" in source.read_text()
    assert _docs(kb) == {"base-one", "base-two", "new-one", "new-two"}


RECOVERY_POINTS = ["recovery.before", "recovery.journal", "recovery.after", "rollback.before",
                   "rollback.action:1", "rollback.action:3", "rollback.action:6",
                   "rollback.after"]


FIRST_CRASHES = ["compile.after", "registry_write.after"]


@pytest.fixture(scope="module")
def crashed_adds(world: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A KB per point of FIRST_CRASHES, left by an add SIGKILLed there: each
    recovery case starts from a copy (the crash is its setup, not its test)."""
    root = tmp_path_factory.mktemp("crashed-adds")
    kbs = {}
    for first in FIRST_CRASHES:
        kb = root / first
        shutil.copytree(world["template"], kb)
        assert _crash(kb, "add", "--jobs", "1", str(world["new"]), point=first) == -9
        kbs[first] = kb
    return kbs


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("first", FIRST_CRASHES)
@pytest.mark.parametrize("point", RECOVERY_POINTS)
def test_crash_inside_recovery(world: dict, crashed_adds: dict[str, Path], tmp_path: Path,
                               first: str, point: str, mode: str) -> None:
    kb = tmp_path / "kb"
    shutil.copytree(crashed_adds[first], kb)
    # Rolling forward (the commit point had passed) never reaches rollback.*.
    _crash(kb, "recover", point=point, env=MODES[mode])
    assert _openkb(kb, "list").code == 0
    _verify(kb)
    assert _openkb(kb, "add", "--jobs", "1", str(world["new"])).code == 0
    _verify(kb)
    assert _hash(kb) == world["add_hash"]


def test_a_journal_naming_a_path_outside_the_kb_is_refused(world: dict, tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    shutil.copytree(world["template"], kb)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    journal = kb / ".openkb" / "journal" / "0000000000000001abcdef01.json"
    journal.write_text(json.dumps({
        "version": 1, "txid": "0000000000000001abcdef01", "status": "active", "op": "add",
        "docs": ["x"], "created": "", "pid": 1, "staging": [],
        "actions": [{"kind": "publish", "target": "../victim.txt",
                     "staged": ".openkb/staging/x/raw.md"}],
    }))
    before = _hash(kb)
    added = _openkb(kb, "add", str(world["extra"]))
    assert added.code != 0
    assert "refusing journal" in added.err and "outside" in added.err
    assert victim.read_text() == "precious"
    assert journal.exists()
    assert _openkb(kb, "recover").code != 0
    assert _openkb(kb, "list").code == 0  # reads still work
    assert victim.read_text() == "precious"
    journal.unlink()
    assert _hash(kb) == before
