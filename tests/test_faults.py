"""ENOSPC and EIO at every I/O call of add, remove and recompile.

Each case injects one fault (OPENKB_FAULT=<op>:<errno>:<n>) into the one I/O
layer. Before the commit point a fault must leave the KB exactly as it was
(tree hash) and consistent (verify); after it, the change stands and the
next command finishes the cleanup.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import markdown_doc, tree_hash, verify_ok, write_tree

from openkb import api, fsio
from openkb.errors import OpenKBError
from openkb.progress import Progress

ERRNOS = ("ENOSPC", "EIO")
MAX_CALLS = 200  # no operation here makes more I/O calls of one kind


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("faults")
    base = write_tree(root / "base", {
        "alpha.md": markdown_doc("Alpha", "apples", "shared topic"),
        "beta.md": markdown_doc("Beta", "pears", "shared topic"),
    })
    new = write_tree(root / "new", {
        "gamma.md": markdown_doc("Gamma", "apples", "shared topic", "plums"),
        "delta.txt": "Delta\n\nplums and pears, plums and pears, and a shared topic.\n",
    })
    kb = root / "kb"
    api.init(str(kb))
    # One document per transaction, so a failed add is one failed transaction.
    (kb / ".openkb" / "config.yaml").write_text("commit_group_size: 1\n")
    api.add(str(kb), [str(base)], Progress(), jobs=1)
    # What the KB must hash to for each subset of the new documents added.
    references = {}
    files = sorted(new.iterdir())
    for subset in ((), (files[0],), (files[1],), tuple(files)):
        reference = root / f"ref-{len(references)}"
        shutil.copytree(kb, reference)
        if subset:
            api.add(str(reference), [str(f) for f in subset], Progress(), jobs=1)
        references[frozenset(f.name for f in subset)] = tree_hash(reference)
    return {"kb": kb, "new": new, "references": references}


def _add(kb: Path, world: dict) -> bool:
    report = api.add(str(kb), [str(world["new"])], Progress(), jobs=1)
    for failure in report.failed:
        assert "injected" in failure.reason, failure.reason
    # Each transaction that failed left nothing; each that succeeded left
    # exactly its document.
    added = frozenset(Path(display).name for _, display in report.added)
    assert tree_hash(kb) == world["references"][added]
    return not report.failed


def _remove(kb: Path, world: dict) -> bool:
    api.remove(str(kb), ["alpha", "beta"], Progress())
    return True


def _recompile(kb: Path, world: dict) -> bool:
    api.recompile(str(kb), Progress())
    return True


OPERATIONS: dict[str, Callable[[Path, dict], bool]] = {
    "add": _add, "remove": _remove, "recompile": _recompile}


def _run_with_fault(kb: Path, world: dict, operation: str, spec: str,
                    monkeypatch: pytest.MonkeyPatch) -> tuple[bool, bool]:
    """(did the fault fire, did the operation succeed)."""
    monkeypatch.setenv("OPENKB_FAULT", spec)
    fsio.configure_from_env()
    try:
        succeeded = OPERATIONS[operation](kb, world)
    except OpenKBError as exc:
        assert "injected" in str(exc), exc
        succeeded = False
    finally:
        fired = fsio.faults_fired()
        monkeypatch.delenv("OPENKB_FAULT")
        fsio.configure_from_env()
    return fired, succeeded


def _check_fault(template: dict, tmp_path: Path, operation: str, op: str, code: str, n: int,
                 monkeypatch: pytest.MonkeyPatch) -> bool:
    """One injected fault; returns whether it fired (False: past the last call)."""
    kb = tmp_path / f"kb-{operation}-{op}-{code}-{n}"
    shutil.copytree(template["kb"], kb)
    before = tree_hash(kb)
    fired, succeeded = _run_with_fault(kb, template, operation, f"{op}:{code}:{n}",
                                       monkeypatch)
    if not fired:
        shutil.rmtree(kb)
        return False
    if succeeded:
        # Past the commit point (cleanup): the change stands, and the next
        # command finishes what the fault interrupted.
        api.list_documents(str(kb), Progress())
        assert tree_hash(kb) != before
    elif operation != "add":  # _add checks each of its transactions itself
        assert tree_hash(kb) == before, f"{operation} {op}:{code}:{n} changed the KB"
    verify_ok(kb)
    shutil.rmtree(kb)
    return True


def _enumerate(template: dict, tmp_path: Path, operation: str, op: str,
               monkeypatch: pytest.MonkeyPatch, codes: tuple[str, ...] = ERRNOS) -> int:
    injected = 0
    for code in codes:
        for n in range(1, MAX_CALLS):
            if not _check_fault(template, tmp_path, operation, op, code, n, monkeypatch):
                break
            injected += 1
    return injected


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("op", ["write", "fsync", "replace"])
def test_first_and_last_calls_fail_cleanly(template: dict, tmp_path: Path, operation: str,
                                           op: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Always run: the first write/fsync/replace of each operation, ENOSPC."""
    assert _check_fault(template, tmp_path, operation, op, "ENOSPC", 1, monkeypatch)


@pytest.mark.heavy
@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("op", fsio.FAULT_OPS)
def test_every_io_call_fails_cleanly(template: dict, tmp_path: Path, operation: str, op: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    injected = _enumerate(template, tmp_path, operation, op, monkeypatch)
    print(f"{operation} {op}: {injected} faults injected, 0 inconsistencies")


def test_an_injected_errno_is_the_one_reported(template: dict, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    kb = tmp_path / "kb"
    shutil.copytree(template["kb"], kb)
    monkeypatch.setenv("OPENKB_FAULT", "fsync:EIO:5")
    fsio.configure_from_env()
    with pytest.raises(OpenKBError) as caught:
        api.remove(str(kb), ["alpha"], Progress())
    assert caught.value.__cause__.errno == errno.EIO
    assert "rolled back" in str(caught.value)


@pytest.mark.parametrize("second", ["truncate:EIO:1", "replace:EIO:1", "unlink:EIO:1"])
def test_a_failing_rollback_is_finished_by_the_next_command(
        template: dict, tmp_path: Path, second: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Double fault: the transaction fails, then so does its rollback. The
    journal stays, and the next command rolls back for good."""
    double_faults = 0
    for n in range(1, MAX_CALLS):
        kb = tmp_path / f"kb-{n}"
        shutil.copytree(template["kb"], kb)
        before = tree_hash(kb)
        monkeypatch.setenv("OPENKB_FAULT", f"fsync:EIO:{n},{second}")
        fsio.configure_from_env()
        try:
            api.remove(str(kb), ["alpha", "beta"], Progress())
            raised = False
        except OpenKBError:
            raised = True
        rules_fired = fsio._faults.rules if fsio._faults else []
        first_fired = rules_fired[0][3] >= rules_fired[0][2]
        second_fired = rules_fired[1][3] >= rules_fired[1][2]
        monkeypatch.delenv("OPENKB_FAULT")
        fsio.configure_from_env()
        if not first_fired:
            break
        if raised:
            api.list_documents(str(kb), Progress())  # the next command recovers
            assert tree_hash(kb) == before
            double_faults += second_fired
        verify_ok(kb)
        shutil.rmtree(kb)
    assert double_faults > 0
