"""ENOSPC and EIO at every I/O call of add, remove, recompile and update.

Each case injects one fault (OPENKB_FAULT=<op>:<errno>:<n>) into the one I/O
layer, in-process, on a fresh copy of a template KB. The full enumeration
(heavy) tries n = 1, 2, 3... for every op until the fault no longer fires;
the always-run subset takes the first and the last call of each op. For
every fault that fired:

- the error names it: a failed add lists the file with the errno's text, a
  failed remove / recompile / update raises CommitFailed saying so;
- before the commit point, the KB is byte-identical to before (tree hash),
  no journal is left, and `verify` passes at once, recovering nothing;
- after it (cleanup), the change stands, and once the next command has run
  `verify` passes;
- either way the KB stays usable: the same operation, run again without a
  fault, gives the KB a fault-free run gives.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import markdown_doc, openkb_in_process, run_openkb, tree_hash, verify_ok, write_tree

from openkb import api, fsio
from openkb.errors import CommitFailed, OpenKBError
from openkb.progress import Progress

ERRNOS = ("ENOSPC", "EIO")
NEVER = 10**9  # a call number no operation reaches: the fault only counts calls


@dataclass
class World:
    """Template KBs (alpha and beta added) and what each operation must give."""

    single: Path  # commit_group_size 1: one transaction per added document
    grouped: Path  # default group size: both new documents in one transaction
    new: Path  # gamma.md and delta.txt, added by "add"
    edited: Path  # alpha.md, edited in place after the templates were built
    before: str  # tree hash of the templates
    after: dict[str, str] = field(default_factory=dict)  # operation -> hash after it
    added: dict[frozenset[str], str] = field(default_factory=dict)  # subset -> hash
    # subset -> hash once the rest is added too (the log keeps the order)
    completed: dict[frozenset[str], str] = field(default_factory=dict)


def _build_kb(root: Path, base: Path, group_size: int | None) -> Path:
    api.init(str(root))
    if group_size is not None:
        (root / ".openkb" / "config.yaml").write_text(f"commit_group_size: {group_size}\n")
    report = api.add(str(root), [str(base)], Progress(), jobs=1)
    assert not report.failed
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("faults")
    base = write_tree(root / "base", {
        "alpha.md": markdown_doc("Alpha", "apples", "shared topic"),
        "beta.md": markdown_doc("Beta", "pears", "shared topic"),
    })
    new = write_tree(root / "new", {
        "gamma.md": markdown_doc("Gamma", "apples", "shared topic", "plums"),
        "delta.txt": "Delta\n\nplums and pears, plums and pears, and a shared topic.\n",
    })
    single = _build_kb(root / "single", base, group_size=1)
    grouped = _build_kb(root / "grouped", base, group_size=None)
    before = tree_hash(single)
    assert tree_hash(grouped) == before
    world = World(single, grouped, new, base / "alpha.md", before)
    # What the KB must hash to for each subset of the new documents added.
    files = sorted(new.iterdir())
    for subset in ((files[0],), (files[1],), tuple(files)):
        reference = root / f"added-{len(world.added)}"
        shutil.copytree(single, reference)
        api.add(str(reference), [str(f) for f in subset], Progress(), jobs=1)
        world.added[frozenset(f.name for f in subset)] = tree_hash(reference)
        api.add(str(reference), [str(new)], Progress(), jobs=1)
        world.completed[frozenset(f.name for f in subset)] = tree_hash(reference)
    world.added[frozenset()] = before
    world.completed[frozenset()] = world.added[frozenset(f.name for f in files)]
    # The update edits alpha.md where it was added from: its origin.
    world.edited.write_text(markdown_doc("Alpha, revised", "apples", "quinces"))
    for operation in ("remove", "remove-keep-raw", "recompile", "update"):
        reference = root / f"after-{operation}"
        shutil.copytree(single, reference)
        assert OPERATIONS[operation](reference, world).complete
        world.after[operation] = tree_hash(reference)
    return world


# -- the operations -----------------------------------------------------------


@dataclass
class Result:
    complete: bool  # the operation went through whole
    added: frozenset[str] = frozenset()  # add: which new files got in
    failures: list[tuple[str | None, str]] = field(default_factory=list)  # (file, reason)


def _failures(report: api.AddReport) -> list[tuple[str | None, str]]:
    """The files that failed; a full disk stops the run instead (file None)."""
    stopped = [(None, report.out_of_space.message)] if report.out_of_space else []
    return [(f.display, f.reason) for f in report.failed] + stopped


def _add(kb: Path, world: World) -> Result:
    report = api.add(str(kb), [str(world.new)], Progress(), jobs=1)
    return Result(not _failures(report), frozenset(Path(d).name for _, d in report.added),
                  _failures(report))


def _remove(kb: Path, world: World) -> Result:
    api.remove(str(kb), ["alpha", "beta"], Progress())
    return Result(True)


def _remove_keep_raw(kb: Path, world: World) -> Result:
    api.remove(str(kb), ["alpha"], Progress(), keep_raw=True)
    return Result(True)


def _recompile(kb: Path, world: World) -> Result:
    api.recompile(str(kb), Progress())
    return Result(True)


def _update(kb: Path, world: World) -> Result:
    report = api.add(str(kb), [str(world.edited)], Progress(), jobs=1)
    assert report.updated or _failures(report), report
    return Result(not _failures(report), failures=_failures(report))


OPERATIONS: dict[str, Callable[[Path, World], Result]] = {
    "add": _add, "add-grouped": _add, "remove": _remove, "remove-keep-raw": _remove_keep_raw,
    "recompile": _recompile, "update": _update,
}


def _template(world: World, operation: str) -> Path:
    return world.grouped if operation == "add-grouped" else world.single


def _expected(world: World, operation: str, result: Result) -> str:
    """The tree hash the KB must have after ``result``."""
    if operation.startswith("add"):
        return world.added[result.added]
    return world.after[operation] if result.complete else world.before


# -- one injected fault ---------------------------------------------------------


@dataclass
class Outcome:
    fired: bool
    problems: list[str]
    went_through: bool = False  # the fault hit after the commit point (or was retried)


def _set_fault(monkeypatch: pytest.MonkeyPatch, spec: str | None) -> None:
    if spec is None:
        monkeypatch.delenv("OPENKB_FAULT", raising=False)
    else:
        monkeypatch.setenv("OPENKB_FAULT", spec)
    fsio.configure_from_env()


def _pending_journals(kb: Path) -> list[str]:
    return sorted(os.listdir(kb / ".openkb" / "journal"))


def _verify_problems(kb: Path) -> list[str]:
    """What `openkb verify` (which recovers nothing) finds."""
    report = api.verify(str(kb), Progress())
    return [f"{p.code} {p.path}" for p in report.problems if not p.repaired]


def inject(world: World, tmp_path: Path, operation: str, op: str, code: str, n: int,
           monkeypatch: pytest.MonkeyPatch) -> Outcome:
    """Run ``operation`` with the n-th ``op`` call failing with ``code``."""
    kb = tmp_path / f"{operation}-{op}-{code}-{n}"
    shutil.copytree(_template(world, operation), kb)
    problems: list[str] = []
    _set_fault(monkeypatch, f"{op}:{code}:{n}")
    try:
        result = OPERATIONS[operation](kb, world)
    except OpenKBError as exc:
        if not isinstance(exc, CommitFailed):
            problems.append(f"raised {type(exc).__name__}, not CommitFailed: {exc}")
        result = Result(False, failures=[("", str(exc))])
    finally:
        fired = fsio.faults_fired()
        _set_fault(monkeypatch, None)
    if fired:
        problems += _named_faults(world, operation, result, os.strerror(getattr(errno, code)))
        problems += _check_kb_after_fault(kb, world, operation, result)
    shutil.rmtree(kb)
    return Outcome(fired, [f"{operation} {op}:{code}:{n}: {p}" for p in problems],
                   fired and result.complete)


def _named_faults(world: World, operation: str, result: Result, text: str) -> list[str]:
    """Each failure names the file (add) and what went wrong (the errno's text)."""
    inputs = {"add": {p.name for p in world.new.iterdir()}, "update": {"alpha.md"}}
    problems = []
    for display, reason in result.failures:
        wrong_file = display is not None and operation.removesuffix("-grouped") in inputs and (
            Path(display).name not in inputs[operation.removesuffix("-grouped")])
        if wrong_file or text not in reason:
            problems.append(f"failure of {display!r} does not say {text!r}: {reason}")
    return problems


def _check_kb_after_fault(kb: Path, world: World, operation: str, result: Result) -> list[str]:
    problems = []
    if result.complete:
        # The fault hit the cleanup after the commit point (or a group that
        # was retried): the next command finishes what it interrupted.
        api.list_documents(str(kb), Progress())
        problems += [f"verify after the next command: {p}" for p in _verify_problems(kb)]
    else:
        # Rolled back in-process: nothing may be left for a later command.
        if _pending_journals(kb):
            problems.append(f"journal left behind: {_pending_journals(kb)}")
        problems += [f"verify: {p}" for p in _verify_problems(kb)]
    if tree_hash(kb) != _expected(world, operation, result):
        problems.append("the KB is not what the reported outcome implies")
    if not result.complete:
        # Still usable: the same operation without a fault completes it.
        try:
            again = OPERATIONS[operation](kb, world)
        except OpenKBError as exc:
            return [*problems, f"the fault-free rerun failed: {exc}"]
        complete = (world.completed[result.added] if operation.startswith("add")
                    else world.after[operation])
        if not again.complete or tree_hash(kb) != complete:
            problems.append("the fault-free rerun did not complete the operation")
        problems += [f"verify after the rerun: {p}" for p in _verify_problems(kb)]
    return problems


def enumerate_faults(world: World, tmp_path: Path, operation: str, op: str, code: str,
                     monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[str]]:
    """Every call of ``op`` in turn: (calls it made, problems found)."""
    problems: list[str] = []
    n = 0
    while True:
        outcome = inject(world, tmp_path, operation, op, code, n + 1, monkeypatch)
        if not outcome.fired:
            return n, problems
        n += 1
        problems += outcome.problems


def count_calls(world: World, tmp_path: Path, operation: str,
                monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Calls per op in one fault-free run, from the fault plan's own hit
    counters (a fault set at a call number never reached only counts)."""
    kb = tmp_path / f"count-{operation}"
    shutil.copytree(_template(world, operation), kb)
    _set_fault(monkeypatch, ",".join(f"{op}:EIO:{NEVER}" for op in fsio.FAULT_OPS))
    try:
        OPERATIONS[operation](kb, world)
        rules = fsio._faults.rules
    finally:
        _set_fault(monkeypatch, None)
    shutil.rmtree(kb)
    return {rule.op: rule.hits for rule in rules}


# -- tests ----------------------------------------------------------------------

ALL_OPERATIONS = ("add", "add-grouped", "remove", "remove-keep-raw", "recompile", "update")


@pytest.mark.parametrize("operation", ["add", "remove", "recompile", "update"])
def test_first_and_last_call_of_each_op_fails_cleanly(
        world: World, tmp_path: Path, operation: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Always run: the first call of every op (before the commit point) and
    the last (mostly cleanup, after it), ENOSPC and EIO alternately."""
    calls = count_calls(world, tmp_path, operation, monkeypatch)
    assert calls["write"] and calls["fsync"] and calls["replace"], calls
    problems: list[str] = []
    sides = set()
    for i, (op, count) in enumerate(sorted(calls.items())):
        for n in sorted({1, count}) if count else []:
            code = ERRNOS[(i + n) % 2]
            outcome = inject(world, tmp_path, operation, op, code, n, monkeypatch)
            assert outcome.fired, f"{op}:{code}:{n} did not fire"
            problems += outcome.problems
            sides.add(outcome.went_through)
    assert not problems, "\n".join(problems)
    assert sides == {False, True}  # faults on both sides of the commit point


@pytest.mark.heavy
@pytest.mark.parametrize("operation", ALL_OPERATIONS)
@pytest.mark.parametrize("op", fsio.FAULT_OPS)
def test_every_io_call_fails_cleanly(world: World, tmp_path: Path, operation: str, op: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    problems: list[str] = []
    injected = 0
    for code in ERRNOS:
        calls, found = enumerate_faults(world, tmp_path, operation, op, code, monkeypatch)
        injected += calls
        problems += found
    print(f"\nFAULTS {operation} {op}: {injected} injected, {len(problems)} inconsistencies")
    assert not problems, "\n".join(problems)


def test_the_counting_matches_the_enumeration(world: World, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The cheap count the always-run test relies on is the number of
    faults the enumeration fires."""
    calls = count_calls(world, tmp_path, "remove", monkeypatch)
    found = enumerate_faults(world, tmp_path, "remove", "replace", "EIO", monkeypatch)
    assert found == (calls["replace"], [])


def test_an_injected_errno_is_the_one_reported(world: World, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    kb = tmp_path / "kb"
    shutil.copytree(world.single, kb)
    _set_fault(monkeypatch, "fsync:EIO:5")
    with pytest.raises(CommitFailed) as caught:
        api.remove(str(kb), ["alpha"], Progress())
    assert caught.value.__cause__.errno == errno.EIO
    assert "rolled back" in str(caught.value) and "Input/output error" in str(caught.value)


# The lock holder record is the first replace of every command (it is
# advisory: a failure to write it is ignored), so "replace:EIO:2" is the
# first replace of the transaction itself.
@pytest.mark.parametrize("second", ["truncate:EIO:1", "replace:EIO:2", "unlink:EIO:1"])
def test_a_failing_rollback_is_finished_by_the_next_command(
        world: World, tmp_path: Path, second: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Double fault: the transaction fails, then so does its rollback. The
    journal stays, the error says so, and the next command rolls back."""
    double_faults = 0
    for n in range(1, 200):
        kb = tmp_path / f"kb-{n}"
        shutil.copytree(world.single, kb)
        _set_fault(monkeypatch, f"fsync:EIO:{n},{second}")
        try:
            api.remove(str(kb), ["alpha", "beta"], Progress())
            error = None
        except OpenKBError as exc:
            error = exc
        first_fired, second_fired = (rule.fired for rule in fsio._faults.rules)
        _set_fault(monkeypatch, None)
        if not first_fired:
            break
        if error is not None:
            if second_fired:
                double_faults += 1
                assert "journal" in str(error) and "kept" in str(error), error
            api.list_documents(str(kb), Progress())  # the next command recovers
            assert tree_hash(kb) == world.before
        verify_ok(kb)
        shutil.rmtree(kb)
    assert double_faults > 0


# -- faults while recovering ----------------------------------------------------


@pytest.fixture(scope="module")
def crashed(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """KBs left by a `remove alpha beta` SIGKILLed before and after the
    commit point."""
    root = tmp_path_factory.mktemp("crashed")
    kbs = {}
    for point in ("compile.after", "mark_committed.before"):
        kb = root / point
        shutil.copytree(world.single, kb)
        result = run_openkb("--kb", str(kb), "remove", "alpha", "beta",
                            env={"OPENKB_CRASH_AT": point})
        assert result.returncode == -9, result.stderr
        kbs[point] = kb
    return kbs


def _recover_with_fault(kb: Path, spec: str, monkeypatch: pytest.MonkeyPatch
                        ) -> tuple[bool, Exception | None]:
    _set_fault(monkeypatch, spec)
    try:
        api.recover(str(kb), Progress())
        error = None
    except Exception as exc:  # what escapes is what the test checks
        error = exc
    finally:
        fired = fsio.faults_fired()
        _set_fault(monkeypatch, None)
    return fired, error


@pytest.mark.parametrize("point", ["compile.after", "mark_committed.before"])
def test_faults_during_recovery_leave_it_to_the_next_command(
        world: World, crashed: dict[str, Path], tmp_path: Path, point: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every I/O call of a recovery fails in turn: the journal stays, and the
    next command recovers to the state the crash point implies."""
    expected = world.before if point == "compile.after" else world.after["remove"]
    injected = 0
    for op in fsio.FAULT_OPS:
        for n in range(1, 100):
            kb = tmp_path / f"{op}-{n}"
            shutil.copytree(crashed[point], kb)
            fired, error = _recover_with_fault(kb, f"{op}:EIO:{n}", monkeypatch)
            if not fired:
                break
            injected += 1
            assert error is None or isinstance(error, OSError | OpenKBError), repr(error)
            api.recover(str(kb), Progress())
            assert not _pending_journals(kb)
            assert tree_hash(kb) == expected, f"{op}:EIO:{n}"
            verify_ok(kb)
            shutil.rmtree(kb)
    print(f"\nFAULTS recovery after {point}: {injected} injected, 0 inconsistencies")
    assert injected >= 2


def test_an_io_error_while_recovering_is_reported_as_an_openkb_error(
        crashed: dict[str, Path], tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    shutil.copytree(crashed["compile.after"], kb)
    result = openkb_in_process("--kb", str(kb), "recover", env={"OPENKB_FAULT": "replace:EIO:2"})
    assert result.code == 1  # not an exception: that would fail the test here
    assert "Input/output error" in result.err and "openkb recover" in result.err


def test_faults_are_injected_into_a_real_process(world: World, tmp_path: Path) -> None:
    """OPENKB_FAULT works from the environment of a real command too."""
    kb = tmp_path / "kb"
    shutil.copytree(world.single, kb)
    result = run_openkb("--kb", str(kb), "remove", "alpha", env={"OPENKB_FAULT": "fsync:ENOSPC:3"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "No space left on device" in result.stderr and "rolled back" in result.stderr
    assert tree_hash(kb) == world.before
    verify_ok(kb)
