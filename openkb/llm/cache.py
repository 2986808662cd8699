"""Replies, kept so that no prompt is ever paid for twice.

One file per reply, ``.openkb/llm-cache/<key>.json``, where the key hashes
(content hash, model, prompt version, input budget): the content hash is
the sha256 of the document's converted text (``source_sha256``), which is
what the prompt is built from. Each file is written atomically and fsynced
(:func:`openkb.fsio.write_atomic`) the moment its reply arrives, on the
calling thread, before the document it belongs to can commit: a SIGKILL
after that loses no reply, and the next run finds it.

The cache is outside the commit protocol on purpose: an entry is a pure
function of its key, written whole or not at all, so whatever a crash
leaves (an entry whose document never committed, a temp file that
recovery sweeps) is still true. ``verify`` reads every entry; ``verify
--repair`` deletes those that are unreadable or whose hashes do not match
(they would be asked again) and those no document in the KB uses.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from openkb import fsio

ENTRY_VERSION = 1


def cache_key(source_sha256: str, model: str, prompt_version: str, input_chars: int) -> str:
    raw = "\0".join((source_sha256, model, prompt_version, str(input_chars)))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    key: str
    source_sha256: str
    model: str
    prompt_version: str
    input_chars: int
    text: str
    tokens_in: int = 0
    tokens_out: int = 0


class ReplyCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._made = False

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def get(self, key: str) -> CacheEntry | None:
        """The entry, if it is there and sound (a damaged one is asked again)."""
        try:
            return _parse(self.path(key).read_bytes(), key)
        except (OSError, ValueError):
            return None

    def put(self, entry: CacheEntry) -> None:
        """Durable when it returns: file and directory entry fsynced."""
        if not self._made:
            fsio.makedirs(self.directory)
            self._made = True
        record = {"v": ENTRY_VERSION, "key": entry.key, "source_sha256": entry.source_sha256,
                  "model": entry.model, "prompt_version": entry.prompt_version,
                  "input_chars": entry.input_chars, "text": entry.text,
                  "text_sha256": hashlib.sha256(entry.text.encode("utf-8")).hexdigest(),
                  "tokens_in": entry.tokens_in, "tokens_out": entry.tokens_out,
                  "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        fsio.write_atomic(self.path(entry.key), orjson.dumps(record))

    def scan(self) -> Iterator[tuple[Path, CacheEntry | str]]:
        """Every entry file, with its entry or what is wrong with it."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return
        for name in names:
            if fsio.is_tmp_name(name):
                continue  # a write cut short: recovery's sweep owns it
            path = self.directory / name
            if not name.endswith(".json"):
                yield path, "not a cache entry"
                continue
            try:
                yield path, _parse(path.read_bytes(), name[:-len(".json")])
            except (OSError, ValueError) as exc:
                yield path, str(exc)


def _parse(data: bytes, key: str) -> CacheEntry:
    """An entry from its file's bytes; ValueError says why it is not sound."""
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"unreadable ({exc})") from None
    if not isinstance(record, dict) or record.get("v") != ENTRY_VERSION:
        raise ValueError("not a cache entry of this openkb")
    try:
        entry = CacheEntry(key=record["key"], source_sha256=record["source_sha256"],
                           model=record["model"], prompt_version=record["prompt_version"],
                           input_chars=int(record["input_chars"]), text=record["text"],
                           tokens_in=int(record.get("tokens_in", 0)),
                           tokens_out=int(record.get("tokens_out", 0)))
        text_sha = record["text_sha256"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"incomplete entry ({exc})") from None
    if entry.key != key or key != cache_key(entry.source_sha256, entry.model,
                                            entry.prompt_version, entry.input_chars):
        raise ValueError("its key does not match its content")
    if hashlib.sha256(entry.text.encode("utf-8")).hexdigest() != text_sha:
        raise ValueError("its reply does not match its hash")
    return entry


@dataclass
class CacheAudit:
    """What ``verify`` finds in the cache: entries that are not sound, and
    sound entries no document in the KB uses (its content is gone)."""

    entries: int = 0
    damaged: list[tuple[Path, str]] = field(default_factory=list)
    unused: list[Path] = field(default_factory=list)


def audit(cache: ReplyCache, used_sources: set[str]) -> CacheAudit:
    found = CacheAudit()
    for path, entry in cache.scan():
        found.entries += 1
        if isinstance(entry, str):
            found.damaged.append((path, entry))
        elif entry.source_sha256 not in used_sources:
            found.unused.append(path)
    return found


def prune(paths: list[Path]) -> int:
    """Delete entries (unused or damaged: a damaged one would be asked
    again anyway); the directory is fsynced once."""
    for path in paths:
        fsio.unlink(path, sync=False)
    if paths:
        fsio.fsync_dir(paths[0].parent)
    return len(paths)
