"""Settings from ``.openkb/config.yaml`` (see config.yaml.example for each key)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from openkb.errors import ConfigError
from openkb.llm.settings import LlmSettings, parse_llm_settings

PDF_ENGINES = ("pdfium", "pypdf")  # openkb.prepare.pdf_text.ENGINES, without importing it
_MAX_DELETE = re.compile(r"^\d+%?$|^\d+\.\d+%$")  # as openkb.sync.plan reads it
EXECUTORS = ("process", "thread", "dask")  # openkb.executors.EXECUTORS, likewise


@dataclass(frozen=True)
class Config:
    file_processing_jobs: int | None = None  # None: one per core
    convert_timeout_s: float = 120.0
    worker_memory_mb: int = 2048
    max_file_mb: int = 256
    commit_group_size: int = 16
    prepare_buffer: int = 1024  # prepared-but-uncommitted files beyond one per worker
    prepare_buffer_mb: int = 512  # ... and their input bytes
    follow_symlinks: bool = False
    lock_timeout_s: float | None = None  # None: wait as long as it takes
    key_terms_per_doc: int = 10
    chunk_chars: int = 1500
    pdf_engine: str = "pdfium"  # or "pypdf": see openkb.prepare.pdf_text
    # `openkb sync` removes at most this many documents ("N") or this share
    # of those under the synced paths ("P%") unless told otherwise.
    sync_max_delete: str | int = "50%"
    executor: str = "process"  # or "thread", "dask": see openkb.executors
    dask_scheduler: str | None = None  # None: a LocalCluster of `jobs` workers
    dask_inputs: str = "bytes"  # or "path": Dask workers read the files themselves
    # Space kept in .openkb/reserve so a removal can run on a full disk
    # (openkb.diskspace); 0: none.
    disk_reserve_mb: int = 8
    llm: LlmSettings = field(default_factory=LlmSettings)  # see openkb.llm.settings

    @property
    def jobs(self) -> int:
        return self.file_processing_jobs or os.cpu_count() or 1

    def with_overrides(self, **overrides: object) -> Config:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return _validated(values, source="command line")


_POSITIVE_INT = {"worker_memory_mb", "max_file_mb", "commit_group_size", "key_terms_per_doc",
                 "chunk_chars", "prepare_buffer", "prepare_buffer_mb"}
_OPTIONAL_POSITIVE_INT = {"file_processing_jobs"}
_NON_NEGATIVE_INT = {"disk_reserve_mb"}
_POSITIVE_FLOAT = {"convert_timeout_s"}
_OPTIONAL_POSITIVE_FLOAT = {"lock_timeout_s"}


def _validated(values: dict[str, object], source: str) -> Config:
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{source}: unknown setting(s) {', '.join(unknown)}",
            hint=f"known settings: {', '.join(sorted(known))}",
        )
    for key, value in values.items():
        ok = True
        if key in _POSITIVE_INT:
            ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
        elif key in _NON_NEGATIVE_INT:
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        elif key in _OPTIONAL_POSITIVE_INT:
            ok = value is None or (isinstance(value, int) and not isinstance(value, bool)
                                   and value > 0)
        elif key in _POSITIVE_FLOAT:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        elif key in _OPTIONAL_POSITIVE_FLOAT:
            ok = value is None or (isinstance(value, (int, float))
                                   and not isinstance(value, bool) and value >= 0)
        elif key == "follow_symlinks":
            ok = isinstance(value, bool)
        elif key == "pdf_engine":
            ok = value in PDF_ENGINES
        elif key == "sync_max_delete":
            ok = (isinstance(value, int) and not isinstance(value, bool) and value >= 0) or (
                isinstance(value, str) and _MAX_DELETE.match(value.strip()) is not None)
        elif key == "executor":
            ok = value in EXECUTORS
        elif key == "dask_inputs":
            ok = value in ("bytes", "path")
        elif key == "dask_scheduler":
            ok = value is None or (isinstance(value, str) and bool(value.strip()))
        elif key == "llm" and not isinstance(value, LlmSettings):
            values[key] = parse_llm_settings(value, source)
        if not ok:
            raise ConfigError(f"{source}: invalid value {value!r} for {key}")
    return Config(**values)  # type: ignore[arg-type]


def load_config(path: Path) -> Config:
    if not path.exists():
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}", hint="fix or delete the file") from exc
    if _only_comments(text):
        return Config()  # as YAML would say, without loading a YAML parser
    import yaml  # here: loading it is a tenth of a short command's start-up

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot read {path}: {exc}", hint="fix or delete the file") from exc
    if data is None:
        return Config()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    return _validated(dict(data), source=str(path))


def _only_comments(text: str) -> bool:
    """No setting in it: every line blank or a comment (the file `init`
    writes, until someone edits it)."""
    # Spaces only: YAML refuses a tab where indentation could be.
    return all(line.lstrip(" ") == "" or line.lstrip(" ").startswith("#")
               for line in text.splitlines())


DEFAULT_CONFIG_TEXT = """\
# openkb settings. Every key is optional; see config.yaml.example in the
# openkb sources for what each one does.
# file_processing_jobs: 4
# convert_timeout_s: 120
# worker_memory_mb: 2048
# max_file_mb: 256
# commit_group_size: 16
"""
