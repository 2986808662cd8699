"""Rendering of every compiled wiki page, as pure functions of registry data.

The same functions run in prepare (summary pages), in commit (concept pages,
index.md, log lines), in `recompile`, and in `verify`, which re-renders each
page and compares bytes. So nothing here may depend on the clock, the
machine or the order rows arrive in: sort, and take time as an argument.
"""

from __future__ import annotations

import re

from openkb.model import DocumentInfo

MAX_OUTLINE_ENTRIES = 200
_LINK_UNSAFE = re.compile(r"[\[\]|\n\r]+")
_DEVICE_NAMES = frozenset({"con", "prn", "aux", "nul"} | {f"{p}{i}" for p in ("com", "lpt")
                                                          for i in range(10)})


def concept_slug(term: str) -> str:
    """File name of a term's concept page. Terms hold only word characters
    other than ``_`` and single spaces, so this is one-to-one; ``_`` marks
    the device names that cannot be file names on Windows."""
    slug = term.replace(" ", "-")
    return f"{slug}_" if slug in _DEVICE_NAMES else slug


def link_text(text: str) -> str:
    """Text safe inside ``[[target|text]]``."""
    return _LINK_UNSAFE.sub(" ", text).strip() or "untitled"


def doc_link(name: str, title: str) -> str:
    return f"[[summaries/{name}|{link_text(title)}]]"


def concept_link(term: str) -> str:
    return f"[[concepts/{concept_slug(term)}|{term}]]"


def one_line(text: str) -> str:
    return " ".join(text.split())


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def summary_text(info: DocumentInfo) -> str:
    """The summary section: the LLM's (openkb.llm), else the lead paragraph."""
    return info.summary or info.lead


def render_summary(name: str, ext: str, size: int, info: DocumentInfo) -> str:
    title = one_line(info.title) or name
    lines = [f"# {title}", ""]
    facts = [f"[[sources/{name}|source text]]", f"original `raw/{name}{ext}`", info.kind]
    lines += ["> " + " · ".join(facts), ""]
    summary = summary_text(info)
    if summary:
        lines += ["## Summary", "", summary, ""]
    if info.outline:
        lines += ["## Outline", ""]
        top = min(entry.level for entry in info.outline)
        for entry in info.outline[:MAX_OUTLINE_ENTRIES]:
            indent = "  " * max(0, min(entry.level - top, 5))
            page = f" (p. {entry.page})" if entry.page else ""
            lines.append(f"{indent}- {one_line(entry.title) or '…'}{page}")
        if len(info.outline) > MAX_OUTLINE_ENTRIES:
            lines.append(f"- … {len(info.outline) - MAX_OUTLINE_ENTRIES} more")
        lines.append("")
    if info.terms:
        lines += ["## Key terms", "", " · ".join(info.terms), ""]
    lines += ["## Stats", "", "| | |", "|---|---|", f"| Type | {info.kind} |"]
    if info.pages is not None:
        lines.append(f"| Pages | {info.pages} |")
    lines += [
        f"| Words | {info.words:,} |",
        f"| Characters | {info.chars:,} |",
        f"| Size | {_human_bytes(size)} |",
        "",
    ]
    return "\n".join(lines)


CONCEPT_INTRO = "Documents with this key term, oldest first:"


def concept_line(name: str, title: str) -> str:
    return f"- {doc_link(name, title)}\n"


def render_concept(term: str, docs: list[tuple[str, str]]) -> str:
    """A concept page: the term and a backlink to every document that has it,
    in the order they were added, so adding a document appends one line."""
    return f"# {term}\n\n{CONCEPT_INTRO}\n\n" + "".join(concept_line(n, t) for n, t in docs)


LOG_HEADER = "# Log\n\nOne line per committed change, oldest first.\n\n"
_LOG_LINE = re.compile(r"^- (\S+) (\w+) (.*) \(tx ([0-9a-f]+)\)$")


def render_log_line(when: str, op: str, subject: str, txid: str) -> str:
    """``subject`` is a :func:`doc_link` or a few words ("all pages")."""
    return f"- {when} {op} {subject} (tx {txid})\n"


def parse_log_line(line: str) -> tuple[str, str, str, str] | None:
    """(when, op, subject, txid) of a log line, or None for anything else."""
    match = _LOG_LINE.match(line.rstrip("\n"))
    return match.groups() if match else None  # type: ignore[return-value]
