"""Named crash points at every step boundary of the commit path.

``OPENKB_CRASH_AT=<name>[:n]`` kills this process with SIGKILL the n-th time
(default 1st) execution reaches ``crashpoint(name)``. Tests enumerate
:data:`CRASHPOINTS` and kill real processes at each one; `openkb debug
crashpoints` prints the same list. A test checks that every
``crashpoint("...")`` in the code names a catalog entry and every entry is
reached by some call, so the catalog cannot drift from the code.
"""

from __future__ import annotations

import os
import signal

from openkb import fsio
from openkb.progress import COMMIT_STEPS

# Every step has a point before and after it; some have points inside, which
# fire once per file or action, so ":n" picks the n-th (a crash between two
# publishes).
_INNER_POINTS = {"snapshot": ("file",), "publish": ("file",), "compile": ("file",),
                 "mark_committed": ("cleaned",), "rollback": ("action",),
                 "recovery": ("journal",)}

# Ordered as a transaction meets them, then rollback and recovery.
CRASHPOINTS: tuple[str, ...] = tuple(
    f"{step}.{point}"
    for step in (*COMMIT_STEPS, "rollback", "recovery")
    for point in ("before", *_INNER_POINTS.get(step, ()), "after"))

_CATALOG = frozenset(CRASHPOINTS)


class _Target:
    __slots__ = ("hits", "name", "nth")

    def __init__(self, spec: str) -> None:
        name, _, nth = spec.partition(":")
        if name not in _CATALOG:
            raise ValueError(
                f"OPENKB_CRASH_AT={spec!r}: unknown crash point; "
                "`openkb debug crashpoints` lists them"
            )
        self.name = name
        self.nth = int(nth) if nth else 1
        self.hits = 0


_target: _Target | None = None
_loaded = False


def _load() -> None:
    global _target, _loaded
    spec = os.environ.get("OPENKB_CRASH_AT", "").strip()
    _target = _Target(spec) if spec else None
    _loaded = True


def reset() -> None:
    """Re-read OPENKB_CRASH_AT (tests change the environment in-process)."""
    _load()


def crashpoint(name: str) -> None:
    if not _loaded:
        _load()
    if _target is None:
        return
    if name not in _CATALOG:
        raise AssertionError(f"crashpoint {name!r} is not in the catalog")
    if name != _target.name:
        return
    _target.hits += 1
    if _target.hits == _target.nth:
        fsio.simulate_power_loss_if_enabled()
        os.kill(os.getpid(), signal.SIGKILL)
