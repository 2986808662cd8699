"""A sync killed at every crash point of its moves-and-removals transaction
(plain SIGKILL, and under both power-loss models): the next command
recovers, `verify` passes, and the same sync run again leaves the KB as a
sync that never crashed (same tree hash, origins included).

The sync's own transaction commits before the add part prepares anything,
so the first hit of each point is in it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import markdown_doc, openkb_in_process, run_openkb, tree_hash, verify_ok, write_tree

from openkb import api
from openkb.crashpoints import CRASHPOINTS
from openkb.progress import Progress

pytestmark = pytest.mark.heavy

COMMIT_POINTS = [p for p in CRASHPOINTS if not p.startswith(("rollback.", "recovery."))]
MODES = {"kill": {}, "powerloss": {"OPENKB_POWERLOSS": "1"},
         "torn": {"OPENKB_POWERLOSS": "torn"}}
NEXT_COMMANDS = (["list", "--json"], ["status"], ["search", "apples"], ["recover"])
BEFORE = {"apples", "pears", "plums", "quinces"}
VANISHED_DONE = {"apples", "plums", "quinces"}  # pears removed, apples moved
AFTER = VANISHED_DONE | {"figs"}


def _docs(kb: Path) -> dict[str, str]:
    return {row.name: row.origin for row in api.list_documents(str(kb), Progress())}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("sync-crash")
    folder = write_tree(root / "notes", {
        "apples.md": markdown_doc("Apples", "apples", "orchards"),
        "pears.md": markdown_doc("Pears", "pears", "orchards"),
        "plums.txt": "Plums\n\nplain text about plums and plums and orchards.\n",
        "deep/quinces.md": markdown_doc("Quinces", "quinces", "orchards"),
    })
    template = root / "template"
    api.init(str(template))
    api.sync(str(template), [str(folder)], Progress(), jobs=1)
    # What the crashing sync finds: one file deleted, one moved, one new.
    (folder / "pears.md").unlink()
    (folder / "apples.md").rename(folder / "deep" / "apples-moved.md")
    write_tree(folder, {"figs.md": markdown_doc("Figs", "figs", "orchards")})
    reference = root / "reference"
    shutil.copytree(template, reference)
    api.sync(str(reference), [str(folder)], Progress(), jobs=1)
    assert set(_docs(reference)) == AFTER
    return {"template": template, "folder": folder, "hash": tree_hash(reference)}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("point", COMMIT_POINTS)
def test_sync_crash_at_every_point(world: dict, tmp_path: Path, point: str, mode: str) -> None:
    kb = tmp_path / "kb"
    shutil.copytree(world["template"], kb)
    sync = ["--kb", str(kb), "--quiet", "sync", "--jobs", "1", str(world["folder"])]
    crashed = run_openkb(*sync, env={"OPENKB_CRASH_AT": point, **MODES[mode]})
    assert crashed.returncode == -9, f"{point} was never reached by sync: {crashed.stderr}"
    following = openkb_in_process("--kb", str(kb), "--quiet",
                                  *NEXT_COMMANDS[COMMIT_POINTS.index(point) % 4])
    assert following.code == 0, following.err
    verify_ok(kb)
    docs = _docs(kb)
    # The moves and removals are one transaction: all of them or none.
    assert set(docs) in (BEFORE, VANISHED_DONE), docs
    if set(docs) == VANISHED_DONE:
        assert docs["apples"] == str(world["folder"] / "deep" / "apples-moved.md")
    rerun = openkb_in_process(*sync)
    assert rerun.code == 0, rerun.err
    verify_ok(kb)
    assert tree_hash(kb) == world["hash"]
