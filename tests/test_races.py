"""Concurrent processes on one KB, some of them killed: the KB stays the
result of some serial order of the commits that survived."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import filelock
import orjson
import psutil
import pytest
from conftest import ROOT, markdown_doc, run_openkb, tree_hash, write_tree

from openkb import pages

pytestmark = pytest.mark.xdist_group("races")


def _inputs(root: Path) -> dict[str, Path]:
    a = {f"a{i}.md": markdown_doc(f"A {i}", f"topic {i}", "shared") for i in range(8)}
    b = {f"b{i}.md": markdown_doc(f"B {i}", f"topic {i}", "other") for i in range(8)}
    c = {f"c{i}.md": markdown_doc(f"C {i}", "shared", "other") for i in range(4)}
    return {
        "base": write_tree(root / "base", {f"base{i}.md": markdown_doc(f"Base {i}", "base")
                                           for i in range(4)}),
        # Overlapping: B and C hold some of A's contents under other names.
        "A": write_tree(root / "A", a),
        "B": write_tree(root / "B", {**b, "copy-a1.md": a["a1.md"], "copy-a2.md": a["a2.md"]}),
        "C": write_tree(root / "C", {**c, "again-a1.md": a["a1.md"], "again-b3.md": b["b3.md"]}),
    }


def _replay_log(kb: Path) -> set[str]:
    """The documents the log says exist, applying its lines in order."""
    names: set[str] = set()
    for line in (kb / "wiki" / "log.md").read_text().splitlines():
        parsed = pages.parse_log_line(line)
        if parsed is None:
            continue
        _, op, subject, _ = parsed
        name = subject.removeprefix("[[summaries/").partition("|")[0]
        if op in ("add", "update"):
            names.add(name)
        elif op == "remove":
            names.discard(name)
    return names


def _check_consistent(kb: Path, input_hashes: set[str]) -> None:
    assert run_openkb("--kb", str(kb), "list").returncode == 0  # recovers
    verified = run_openkb("--kb", str(kb), "verify")
    assert verified.returncode == 0, verified.stdout
    docs = json.loads(run_openkb("--kb", str(kb), "list", "--json").stdout)
    shas = [d["sha256"] for d in docs]
    assert len(shas) == len(set(shas)), "a document is in the KB twice"
    assert set(shas) <= input_hashes
    for raw in (kb / "raw").iterdir():
        assert hashlib.sha256(raw.read_bytes()).hexdigest() in input_hashes
    assert {d["name"] for d in docs} == _replay_log(kb)


def _start(kb: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "openkb", "--kb", str(kb), "--quiet", *args],
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_tree(proc: subprocess.Popen) -> None:
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.send_signal(signal.SIGKILL)
    for child in children:
        child.kill()


@pytest.mark.heavy
def test_concurrent_adds_and_removes_with_random_kills(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path / "in")
    input_hashes = {hashlib.sha256(p.read_bytes()).hexdigest()
                    for folder in inputs.values() for p in folder.iterdir()}
    template = tmp_path / "template"
    assert run_openkb("init", str(template)).returncode == 0
    assert run_openkb("--kb", str(template), "add", str(inputs["base"])).returncode == 0
    rng = random.Random(20261122)
    kills = 0
    for iteration in range(20):
        kb = tmp_path / f"kb{iteration}"
        shutil.copytree(template, kb)
        procs = [_start(kb, "add", "--jobs", "2", str(inputs["A"])),
                 _start(kb, "add", "--jobs", "1", str(inputs["B"])),
                 _start(kb, "add", "--jobs", "2", str(inputs["C"]), str(inputs["A"])),
                 _start(kb, "remove", "base0", "base1")]
        victims = rng.sample(procs, k=rng.randint(0, 2))
        time.sleep(rng.uniform(0.05, 1.2))
        for victim in victims:
            _kill_tree(victim)
        kills += len(victims)
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert "Traceback" not in err, err
            assert proc.returncode in (0, 2, -9), (proc.args, proc.returncode, err)
        _check_consistent(kb, input_hashes)
        # A survivor run completes the set: every distinct content once.
        for folder in ("A", "B", "C"):
            assert run_openkb("--kb", str(kb), "add", str(inputs[folder])).returncode == 0
        _check_consistent(kb, input_hashes)
        docs = json.loads(run_openkb("--kb", str(kb), "list", "--json").stdout)
        new_contents = input_hashes - {hashlib.sha256(p.read_bytes()).hexdigest()
                                       for p in inputs["base"].iterdir()}
        assert new_contents <= {d["sha256"] for d in docs}
        shutil.rmtree(kb)
    print(f"20 iterations, {kills} processes killed, 0 inconsistencies")


def test_lock_timeout_exits_3_and_changes_nothing(kb: Path, tmp_path: Path) -> None:
    docs = write_tree(tmp_path / "d", {"one.md": markdown_doc("One", "apples")})
    assert run_openkb("--kb", str(kb), "add", str(docs)).returncode == 0
    before = tree_hash(kb)
    lock = filelock.FileLock(kb / ".openkb" / "lock")
    with lock:
        (kb / ".openkb" / "lock.holder.json").write_bytes(orjson.dumps({
            "pid": os.getpid(), "command": "openkb add", "started": time.time(),
            "acquired": time.time(), "process_created": psutil.Process().create_time()}))
        for args in (["remove", "one"], ["add", str(write_tree(tmp_path / "e", {
                "two.md": markdown_doc("Two", "pears")}))], ["recompile"]):
            result = run_openkb("--kb", str(kb), "--lock-timeout", "0.5", *args)
            assert result.returncode == 3, result.stderr
            assert f"locked by openkb add (pid {os.getpid()}" in result.stderr
            assert "gave up after 0.5s" in result.stderr
    assert tree_hash(kb) == before


def test_a_waiting_command_says_who_holds_the_lock(kb: Path) -> None:
    with filelock.FileLock(kb / ".openkb" / "lock"):
        (kb / ".openkb" / "lock.holder.json").write_bytes(orjson.dumps({
            "pid": os.getpid(), "command": "openkb add", "started": time.time(),
            "acquired": time.time(), "process_created": psutil.Process().create_time()}))
        waiting = subprocess.Popen(
            [sys.executable, "-m", "openkb", "--kb", str(kb), "recompile"],
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
    _, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert f"waiting for lock held by openkb add (pid {os.getpid()}, " in err


def test_readers_are_not_blocked_by_a_writer(kb: Path, tmp_path: Path) -> None:
    docs = write_tree(tmp_path / "d", {"one.md": markdown_doc("One", "apples")})
    assert run_openkb("--kb", str(kb), "add", str(docs)).returncode == 0
    with filelock.FileLock(kb / ".openkb" / "lock"):
        for args in (["list"], ["search", "apples"], ["status"], ["show", "one"]):
            result = run_openkb("--kb", str(kb), "--lock-timeout", "0.2", *args, timeout=20)
            assert result.returncode == 0, (args, result.stderr)
