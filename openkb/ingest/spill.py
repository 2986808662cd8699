"""A list that a run only appends to and reads whole at its end, kept in
bounded memory: past :data:`SPILL_EVERY` items it goes to an anonymous
temporary file.

An add of 20,000 files reports each file's outcome (the name it got, the
file it came from): the CLI's ``--json`` prints them all, and the failure
ledger reads them. Held as Python objects they would grow the main process
by a few hundred bytes per document for the whole run, which is what made
its memory grow with the number of files rather than with the window.

The file is written with pickle (names and paths may hold any character,
surrogate escapes included) in batches, and read back in order. A write
that fails (a full disk) is no reason to fail an ingest: the items stay in
memory from then on, as they did before.
"""

from __future__ import annotations

import logging
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any, Generic, TypeVar

T = TypeVar("T")

SPILL_EVERY = 512  # items held in memory before they are written out

log = logging.getLogger("openkb")


class SpillList(Generic[T]):
    def __init__(self, items: Iterable[T] = ()) -> None:
        self._tail: list[T] = []  # the items not written out, after those that are
        self._file: IO[bytes] | None = None
        self._end = 0  # bytes of whole batches in the file
        self._spilled = 0  # items in the file
        self._spill_failed = False
        self.extend(items)

    def append(self, item: T) -> None:
        self._tail.append(item)
        if len(self._tail) >= SPILL_EVERY and not self._spill_failed:
            self._spill()

    def extend(self, items: Iterable[T]) -> None:
        for item in items:
            self.append(item)

    def __iadd__(self, items: Iterable[T]) -> SpillList[T]:
        self.extend(items)
        return self

    def _spill(self) -> None:
        try:
            if self._file is None:
                # Lives as long as the list: closed (and gone) when it is collected.
                self._file = tempfile.TemporaryFile(prefix="openkb-report-")  # noqa: SIM115
            self._file.seek(self._end)
            pickle.dump(self._tail, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self._file.flush()
            self._end = self._file.tell()
        except OSError as exc:
            # Whatever part of the batch reached the file lies past _end and
            # is never read; the items stay here.
            self._spill_failed = True
            log.warning("could not write the run's report to a temporary file (%s); "
                        "keeping it in memory", exc.strerror or exc)
            return
        self._spilled += len(self._tail)
        self._tail = []

    def __len__(self) -> int:
        return self._spilled + len(self._tail)

    def __iter__(self) -> Iterator[T]:
        position = 0
        while self._file is not None and position < self._end:
            # Seek for each batch: another reader, or a spill, may have
            # moved the file's offset since.
            self._file.seek(position)
            batch = pickle.load(self._file)
            position = self._file.tell()
            yield from batch
        yield from list(self._tail)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SpillList | list | tuple):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"SpillList({list(self)!r})"

    def __getstate__(self) -> dict[str, Any]:
        # A report sent to another process (or copied) carries its items.
        return {"items": list(self)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["items"])  # type: ignore[misc]
