"""Rendering of `openkb progress summarize`."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from openkb.api import RunSummary
from openkb.cli.render import safe


def print_summary(console: Console, summary: RunSummary) -> None:
    term = summary.terminal or {}
    outcome = term.get("event", "unfinished")
    console.print(f"run {safe(summary.run_id)}: {outcome}, {summary.wall_ms / 1000:.2f}s wall, "
                  f"{summary.events} events, max RSS {summary.max_rss_mib:.0f} MiB")
    if len(summary.runs_in_file) > 1:
        console.print(f"[dim]{len(summary.runs_in_file)} runs in the file; --run picks one[/]")
    if term.get("counts"):
        counts = ", ".join(f"{k} {v}" for k, v in term["counts"].items())
        console.print(f"counts: {safe(counts)}; exit code {term.get('exit_code')}")
    if term.get("skipped_by_reason"):
        reasons = ", ".join(f"{k} {v}" for k, v in term["skipped_by_reason"].items())
        console.print(f"skipped by reason: {safe(reasons)}")
    if term.get("error"):
        console.print(f"[red]error:[/] {safe(str(term['error']))}")
    table = Table(title="time per phase", box=None)
    for column in ("phase", "count", "busy ms", "wall ms", "max ms"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for stats in summary.phases:
        table.add_row(stats.phase, str(stats.count), f"{stats.busy_ms:,.1f}",
                      f"{stats.wall_ms:,.1f}", f"{stats.max_ms:,.1f}")
    console.print(table)
    console.print(f"lock wait: {summary.lock_wait_ms:,.1f} ms over {summary.lock_waits} "
                  "acquisitions")
    if summary.heartbeats:
        console.print(f"heartbeats: {summary.heartbeats}; longest time without progress "
                      f"{summary.longest_stall_s:,.1f}s")
    if summary.slowest_files:
        slow = Table(title="slowest files (prepare)", box=None)
        slow.add_column("ms", justify="right")
        slow.add_column("worker", justify="right")
        slow.add_column("file")
        for entry in summary.slowest_files:
            slow.add_row(f"{entry['dur_ms']:,.1f}", str(entry.get("worker")),
                         safe(str(entry["file"])))
        console.print(slow)
    for failure in summary.failed_files:
        console.print(f"[red]failed[/] {safe(str(failure['file']))}: "
                      f"{safe(str(failure['error']))}")
    if summary.torn_lines or summary.foreign_lines:
        console.print(f"[yellow]skipped {summary.torn_lines} torn and {summary.foreign_lines} "
                      "foreign line(s)[/]")
    for note in summary.notes:
        console.print(f"[yellow]{note}[/]")
