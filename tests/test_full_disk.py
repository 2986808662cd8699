"""A real full disk (a small tmpfs), not an injected errno: ENOSPC from the
kernel in staging, in the commit and in SQLite itself."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import markdown_doc, run_openkb, write_tree


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs",
                              str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not root'})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _names(kb: Path) -> set[str]:
    listing = run_openkb("--kb", str(kb), "list", "--json")
    assert listing.returncode == 0, listing.stderr
    return {d["name"] for d in json.loads(listing.stdout)}


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_running_out_of_space_fails_files_and_keeps_the_kb_usable(
        small_disk: Path, tmp_path: Path, jobs: str) -> None:
    kb = small_disk / "kb"
    assert run_openkb("init", str(kb)).returncode == 0
    ballast = small_disk / "someone-elses-file"
    ballast.write_bytes(b"\0" * 512 * 1024)
    # Each file is ~120 KB of distinct text; forty of them cannot fit in 3 MB
    # once stored three times (raw, source, and staging on the way).
    docs = write_tree(tmp_path / "docs", {
        f"doc-{i:02d}.md": markdown_doc(f"Doc {i}", f"topic {i}", "shared theme",
                                        extra=" ".join(f"w{i}x{j}" for j in range(20_000)))
        for i in range(40)})
    added = run_openkb("--kb", str(kb), "add", "--jobs", jobs, str(docs), timeout=300)
    assert added.returncode == 1, added.stdout + added.stderr
    assert "Traceback" not in added.stderr
    out = added.stdout + added.stderr
    assert "No space left on device" in out or "disk is full" in out
    present = _names(kb)
    # Staging runs ahead of the commits (prepare_buffer_mb), so with workers
    # the disk may fill before the first commit: then nothing got in.
    assert len(present) < 40 and (present or jobs == "2")
    verified = run_openkb("--kb", str(kb), "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # With the disk still full even a remove cannot journal itself: it fails
    # cleanly. Once the user frees some space, the KB works as before.
    if present:
        still_full = run_openkb("--kb", str(kb), "remove", sorted(present)[0])
        assert still_full.returncode in (0, 1) and "Traceback" not in still_full.stderr
        assert run_openkb("--kb", str(kb), "verify").returncode == 0
    ballast.unlink()
    victims = sorted(_names(kb))[: len(present) // 2]
    if victims:
        assert run_openkb("--kb", str(kb), "remove", *victims).returncode == 0
    small = write_tree(tmp_path / "small", {"small.md": markdown_doc("Small", "apples")})
    assert run_openkb("--kb", str(kb), "add", str(small)).returncode == 0
    assert "small" in _names(kb)
    assert run_openkb("--kb", str(kb), "verify").returncode == 0
