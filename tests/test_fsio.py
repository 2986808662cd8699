"""The I/O layer: atomic writes, fault injection, and the power-loss model."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from openkb import fsio, fsio_many
from openkb.powerloss import DurabilityTracker


def test_write_atomic_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "page.md"
    target.write_text("old")
    fsio.write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["page.md"]


@pytest.mark.parametrize("op", ["open", "write", "fsync", "replace"])
def test_a_failed_atomic_write_leaves_the_old_file(tmp_path: Path, op: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "page.md"
    target.write_text("old")
    monkeypatch.setenv("OPENKB_FAULT", f"{op}:ENOSPC")
    fsio.configure_from_env()
    with pytest.raises(OSError) as caught:
        fsio.write_atomic(target, b"new")
    assert caught.value.errno == errno.ENOSPC
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["page.md"]


def test_fault_fires_on_the_nth_call_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENKB_FAULT", "fsync:EIO:3")
    fsio.configure_from_env()
    fsio.write_atomic(tmp_path / "a", b"1")  # fsync 1 (file) and 2 (dir)
    with pytest.raises(OSError) as caught:
        fsio.write_atomic(tmp_path / "b", b"2")
    assert caught.value.errno == errno.EIO
    fsio.write_atomic(tmp_path / "c", b"3")


@pytest.mark.parametrize("spec", ["nosuchop:EIO", "write:ENOTANERRNO", "write"])
def test_bad_fault_specs_are_rejected(spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENKB_FAULT", spec)
    with pytest.raises(ValueError):
        fsio.configure_from_env()


def test_pages_fsynced_together_are_all_replaced_and_leave_no_temp(tmp_path: Path) -> None:
    pages = [(tmp_path / f"p{i}.md", f"page {i}".encode()) for i in range(300)]
    (tmp_path / "p7.md").write_text("old")
    fsio_many.write_many_atomic(pages)  # three batches of BATCH_FILES
    assert all(path.read_bytes() == data for path, data in pages)
    assert sorted(os.listdir(tmp_path)) == sorted(path.name for path, _ in pages)
    fsio_many.append_many([(tmp_path / "p1.md", b"+"), (tmp_path / "new.md", b"x")])
    assert (tmp_path / "p1.md").read_bytes() == b"page 1+"
    assert (tmp_path / "new.md").read_bytes() == b"x"


def test_a_failed_fsync_in_a_batch_replaces_no_page(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The n-th fsync still names one file (the hook runs in order before
    the batch is issued), and nothing is renamed into place before every
    fsync of the batch returned."""
    pages = [(tmp_path / f"p{i}.md", b"new") for i in range(5)]
    for path, _ in pages:
        path.write_text("old")
    monkeypatch.setenv("OPENKB_FAULT", "fsync:EIO:4")
    fsio.configure_from_env()
    with pytest.raises(OSError) as caught:
        fsio_many.write_many_atomic(pages)
    assert caught.value.errno == errno.EIO
    assert all(path.read_text() == "old" for path, _ in pages)
    assert sorted(os.listdir(tmp_path)) == sorted(path.name for path, _ in pages)


def test_append_returns_the_old_size_for_rollback(tmp_path: Path) -> None:
    log = tmp_path / "log.md"
    log.write_text("# Log\n")
    assert fsio.append(log, b"- line\n") == 6
    fsio.truncate(log, 6)
    assert log.read_text() == "# Log\n"


class TestPowerLossModel:
    """The tracker keeps exactly what was fsynced, file data and dir entries."""

    def test_unsynced_rename_is_undone(self, tmp_path: Path) -> None:
        tracker = DurabilityTracker()
        src, dst = tmp_path / "staged", tmp_path / "live"
        src.write_bytes(b"data")
        dst.write_bytes(b"old")
        tracker.before_entry_change(src)
        tracker.before_entry_change(dst)
        os.replace(src, dst)
        tracker.drop_unsynced()
        assert src.read_bytes() == b"data" and dst.read_bytes() == b"old"

    def test_synced_rename_survives(self, tmp_path: Path) -> None:
        tracker = DurabilityTracker()
        src, dst = tmp_path / "staged", tmp_path / "live"
        src.write_bytes(b"data")
        tracker.before_entry_change(src)
        tracker.before_entry_change(dst)
        os.replace(src, dst)
        tracker.dir_synced(tmp_path)
        tracker.drop_unsynced()
        assert not src.exists() and dst.read_bytes() == b"data"

    def test_new_file_without_fsync_loses_its_data(self, tmp_path: Path) -> None:
        tracker = DurabilityTracker()
        new = tmp_path / "new"
        tracker.before_entry_change(new)
        new.write_bytes(b"unsynced")
        tracker.file_created(new)
        tracker.dir_synced(tmp_path)  # the name is durable, the data is not
        tracker.drop_unsynced()
        assert new.read_bytes() == b""

    def test_unsynced_append_is_dropped(self, tmp_path: Path) -> None:
        tracker = DurabilityTracker()
        log = tmp_path / "log"
        log.write_bytes(b"head\n")
        tracker.before_content_change(log)
        with open(log, "ab") as out:
            out.write(b"tail\n")
        tracker.drop_unsynced()
        assert log.read_bytes() == b"head\n"

    def test_fsio_under_the_model_keeps_atomic_writes(self, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OPENKB_POWERLOSS", "1")
        fsio.configure_from_env()
        target = tmp_path / "page"
        target.write_bytes(b"old")
        fsio.write_atomic(target, b"new")
        fsio.simulate_power_loss_if_enabled()
        assert target.read_bytes() == b"new"
        unsynced = tmp_path / "other"
        fsio.write_atomic(unsynced, b"x", durable=False)
        fsio.simulate_power_loss_if_enabled()
        assert not unsynced.exists()


class TestTornPowerLoss:
    """The third outcome: the rename or create reached the disk, the data
    behind it did not (metadata written before data)."""

    @pytest.fixture(autouse=True)
    def _torn(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OPENKB_POWERLOSS", "torn")
        fsio.configure_from_env()

    def test_an_unsynced_atomic_write_keeps_its_name_and_loses_its_data(
            self, tmp_path: Path) -> None:
        small, large = tmp_path / "small", tmp_path / "large"
        small.write_bytes(b"old")
        fsio.write_atomic(small, b"new record", durable=False)
        fsio.write_atomic(large, b"x" * 10_000, durable=False)
        fsio.simulate_power_loss_if_enabled()
        assert small.read_bytes() == b""  # the rename survived, the data did not
        assert large.read_bytes() == b"x" * 8192  # cut at a 4 KiB boundary

    def test_durable_writes_survive_whole(self, tmp_path: Path) -> None:
        target = tmp_path / "journal.json"
        fsio.write_atomic(target, b"y" * 10_000)
        fsio.simulate_power_loss_if_enabled()
        assert target.read_bytes() == b"y" * 10_000

    def test_an_unsynced_append_keeps_its_durable_part(self, tmp_path: Path) -> None:
        log = tmp_path / "log"
        fsio.write_atomic(log, b"head\n")
        fsio._tracker.before_content_change(log)
        with open(log, "ab") as out:
            out.write(b"tail\n")
        fsio.simulate_power_loss_if_enabled()
        assert log.read_bytes() == b"head\n"

    def test_unsynced_renames_and_unlinks_survive(self, tmp_path: Path) -> None:
        a, b = tmp_path / "a", tmp_path / "b"
        fsio.write_atomic(a, b"data")
        fsio.replace(a, b, sync=False)
        fsio.simulate_power_loss_if_enabled()
        assert not a.exists() and b.read_bytes() == b"data"
        fsio.unlink(b, sync=False)
        fsio.simulate_power_loss_if_enabled()
        assert not b.exists()
