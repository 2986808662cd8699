"""Turning API results into tables, text or JSON. No logic beyond presentation."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from openkb.api import (
    COMMIT_STEPS,
    HIT_END,
    HIT_START,
    SKIP_REASONS,
    DocumentRow,
    SearchHit,
)

if TYPE_CHECKING:  # loaded only by the command that has one to render
    from openkb.api import AddReport, OutOfSpace, Problem, VerifyReport


def _default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)  # type: ignore[arg-type]
    raise TypeError(type(value).__name__)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=orjson.OPT_INDENT_2)


def print_json(data: Any) -> None:
    """``data`` as indented JSON. The values of a dict that are iterators
    (an add's per-file lists, read back from disk) are written item by item,
    so 20,000 files are never one document in memory; the bytes are those
    of the whole document dumped at once."""
    out = sys.stdout.buffer
    if isinstance(data, dict) and data and any(isinstance(v, Iterator) for v in data.values()):
        for i, (key, value) in enumerate(data.items()):
            out.write((b",\n  " if i else b"{\n  ") + orjson.dumps(key) + b": ")
            if not isinstance(value, Iterator):
                # Formatting newlines only: orjson escapes those inside strings.
                out.write(_dumps(value).replace(b"\n", b"\n  "))
                continue
            empty = True
            for item in value:
                out.write((b"[" if empty else b",") + b"\n    "
                          + _dumps(item).replace(b"\n", b"\n    "))
                empty = False
            out.write(b"[]" if empty else b"\n  ]")
        out.write(b"\n}")
    else:
        out.write(_dumps(data))
    out.write(b"\n")
    sys.stdout.flush()


def safe(text: str) -> str:
    """A file name or title fit for one terminal line: control characters
    (newlines in names, escape sequences) shown escaped, markup escaped."""
    cleaned = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in
                      str(text))
    return escape(cleaned)


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def document_json(row: DocumentRow) -> dict[str, Any]:
    return {"name": row.name, "title": row.title, "kind": row.kind, "bytes": row.bytes,
            "sha256": row.sha256, "origin": row.origin, "added_at": row.added_at,
            "pages": row.info.pages, "words": row.info.words, "terms": row.info.terms}


def documents_table(rows: list[DocumentRow]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("name", "kind", "size", "title"):
        table.add_column(column)
    for row in rows:
        table.add_row(safe(row.name), row.kind, human_bytes(row.bytes), safe(row.title))
    return table


def render_hit_snippet(snippet: str) -> str:
    """Matches in bold; everything else escaped (the markers are control
    characters, so they must be swapped before escaping)."""
    parts = []
    for i, piece in enumerate(" ".join(snippet.split()).split(HIT_START)):
        hit, _, rest = piece.partition(HIT_END) if i else ("", "", piece)
        if hit:
            parts.append(f"[bold yellow]{safe(hit)}[/]")
        parts.append(safe(rest))
    return "".join(parts)


def hit_json(hit: SearchHit) -> dict[str, Any]:
    plain = hit.snippet.replace(HIT_START, "").replace(HIT_END, "")
    return {"doc": hit.doc, "title": hit.title, "heading": hit.heading,
            "snippet": " ".join(plain.split()), "score": round(hit.score, 4),
            "highlighted": " ".join(hit.snippet.replace(HIT_START, "**")
                                    .replace(HIT_END, "**").split())}


def print_hits(console: Console, hits: list[SearchHit]) -> None:
    for n, hit in enumerate(hits, 1):
        heading = f" › {safe(hit.heading)}" if hit.heading else ""
        console.print(f"[bold]{n}. {safe(hit.title)}[/] [dim]({safe(hit.doc)}{heading})[/]")
        console.print(f"   {render_hit_snippet(hit.snippet)}")


def add_report_json(report: AddReport) -> dict[str, Any]:
    return {
        # Iterators: print_json writes them item by item (see AddReport).
        "added": ({"name": n, "file": f} for n, f in report.added),
        "updated": ({"name": n, "file": f} for n, f in report.updated),
        "skipped": ({"file": s.display, "reason": s.reason, "detail": s.detail}
                    for s in report.skipped),
        "failed": [{"file": f.display, "reason": f.reason} for f in report.failed],
        "interrupted": report.interrupted,
        # The disk filled up and stopped the run (None: it did not).
        "out_of_space": _out_of_space_json(report.out_of_space),
        "bytes": report.bytes_committed,
        "wall_s": round(report.wall_s, 3),
        "jobs": report.jobs,
        "phase_busy_ms": report.phase_ms,
        "exit_code": report.exit_code,
    }


def _out_of_space_json(stopped: OutOfSpace | None) -> dict[str, Any] | None:
    return None if stopped is None else dataclasses.asdict(stopped) | {"message": stopped.message}


PHASES = ("scan", "prefilter", "prepare", "lock_wait", *COMMIT_STEPS, "rollback", "recovery")


def _duration(ms: float) -> str:
    return f"{ms / 1000:.1f}s" if ms >= 1000 else f"{ms:.0f}ms"


def print_add_summary(console: Console, report: AddReport, verbose: bool) -> None:
    added, updated = len(report.added), len(report.updated)
    console.print(
        f"[green]added {added}[/]" + (f", updated {updated}" if updated else "")
        + f", skipped {len(report.skipped)}, [{'red' if report.failed else 'green'}]failed "
        f"{len(report.failed)}[/] in {report.wall_s:.1f}s "
        f"({human_bytes(report.bytes_committed)}, jobs={report.jobs})"
    )
    by_reason: dict[str, list[str]] = {}
    for skipped in report.skipped:
        by_reason.setdefault(skipped.reason, []).append(skipped.display)
    for reason, files in sorted(by_reason.items()):
        label = SKIP_REASONS.get(reason, reason)
        console.print(f"  skipped {len(files)}: {escape(label)}"
                      + ("; --retry-failed tries them again" if reason == "failed-before" else ""))
        if verbose:
            for file in files[:50]:
                console.print(f"    {safe(file)}")
    if report.failed:
        console.print("[red]failed:[/]")
        for failure in report.failed:
            console.print(f"  {safe(failure.display)}: {safe(failure.reason)}")
    if report.phase_ms and not verbose:
        # Where the time went, in one line; --debug prints every phase.
        busiest = sorted(((ms, phase) for phase, ms in report.phase_ms.items()
                          if phase in PHASES and ms >= 1), reverse=True)[:6]
        if busiest:
            console.print("  time: " + " · ".join(f"{phase} {_duration(ms)}"
                                                  for ms, phase in busiest)
                          + " (busy, summed over workers)", highlight=False)
    if verbose and report.phase_ms:
        table = Table(title="time per phase (busy, summed over workers)", box=None)
        table.add_column("phase")
        table.add_column("ms", justify="right")
        for phase in PHASES:
            if phase in report.phase_ms:
                table.add_row(phase, f"{report.phase_ms[phase]:,.1f}")
        console.print(table)
    if report.out_of_space is not None:
        console.print(f"[red]{escape(report.out_of_space.message)}[/]")
    if report.interrupted:
        console.print("[yellow]interrupted: committed documents are kept; run the same add "
                      "again to finish[/]")
    if report.llm:
        c = report.llm
        console.print(f"  LLM summaries: {c.get('calls', 0)} answered, {c.get('cached', 0)} from "
                      f"cache, {c.get('retried', 0)} earlier ones retried, {c.get('retries', 0)} "
                      f"retries ({c.get('rate_limited', 0)} rate-limited), tokens "
                      f"{c.get('tokens_in', 0):,} in / {c.get('tokens_out', 0):,} out",
                      highlight=False)
        _print_llm_pending(console, c.get("pending", 0), report.llm_stopped)


def print_llm_refresh(console: Console, report: Any) -> None:
    """What `recompile` with the LLM did (an openkb.llm.refresh.RefreshReport)."""
    console.print(f"LLM summaries: {report.answered} answered, {report.cached} from cache, "
                  f"of {report.asked} documents", highlight=False)
    _print_llm_pending(console, report.pending, report.stopped)


def _print_llm_pending(console: Console, pending: int, stopped: str | None) -> None:
    if stopped:
        console.print(f"[red]LLM summaries stopped:[/] {safe(stopped)}")
    if pending:
        console.print(f"  [yellow]{pending} document(s) kept their extractive summary[/] and "
                      "wait for an LLM one: `openkb status` counts them, the next "
                      "`openkb add --llm` or `openkb recompile --llm` retries them")


# A kind of problem with more entries than this is shown as a count and the
# first few: after a crash, or on a KB someone else wrote into, a line per
# entry would bury everything else.
PROBLEMS_SHOWN_IN_FULL = 20
PROBLEMS_SAMPLED = 5


def _problem_line(problem: Problem) -> str:
    mark = "[green]repaired[/]" if problem.repaired else "[red]problem[/]"
    return f"{mark} {problem.code}: {safe(problem.path)}: {safe(problem.message)}"


def print_verify_report(console: Console, report: VerifyReport, verbose: bool) -> None:
    """Each pending journal on one line, with a count of the paths it holds
    mid-flight; other problems one per line, or counted and sampled when
    there are many of a kind (``verbose``: every entry, always)."""
    grouped = report.grouped()
    for group in grouped.journals:
        console.print(_problem_line(group.journal))
        if group.explained:
            counts = ", ".join(f"{code} {n}" for code, n in group.counts().items())
            console.print(f"  its transaction holds {len(group.explained)} path(s) "
                          f"mid-flight: {counts}")
            if verbose:
                for problem in group.explained:
                    console.print(f"    {_problem_line(problem)}")
    for kind in grouped.kinds:
        problems = kind.problems
        if verbose or len(problems) <= PROBLEMS_SHOWN_IN_FULL:
            for problem in problems:
                console.print(_problem_line(problem))
            continue
        console.print(f"[red]problem[/] {kind.code}: {len(problems)} entries, the first "
                      f"{PROBLEMS_SAMPLED} below")
        for problem in problems[:PROBLEMS_SAMPLED]:
            console.print(f"  {_problem_line(problem)}")
        console.print(f"  … and {len(problems) - PROBLEMS_SAMPLED} more "
                      "(`openkb verify --verbose` lists them all)")
    verdict = "[green]ok[/]" if report.ok else "[red]FAILED[/]"
    console.print(f"{verdict}: {report.documents} documents, {report.concepts} concepts, "
                  f"{report.files_checked} files checked")
    if report.llm_cache_pruned:
        console.print(f"pruned {report.llm_cache_pruned} LLM cache entries no document uses")
    elif report.llm_cache_unused:
        console.print(f"[dim]{report.llm_cache_unused} LLM cache entries no document uses "
                      "(`openkb verify --repair` prunes them)[/]")


def ago(timestamp: float) -> str:
    import time

    seconds = max(0, int(time.time() - timestamp))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"
