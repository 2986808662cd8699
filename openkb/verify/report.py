"""What `openkb verify` finds: problems, each with a code, and their grouping.

A front end shows the problems a pending journal explains under that
journal, and the others by kind; :meth:`VerifyReport.grouped` does that
sorting, so every front end shows the same thing. Every problem stays in
:attr:`VerifyReport.problems`, in the order the check found it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Problem:
    code: str
    path: str  # KB-relative; a document's name for the per-document code "index"
    message: str
    repaired: bool = False
    # The txid of the pending journal whose transaction in flight explains
    # this problem (a journal's own problem names its txid), else None.
    journal: str | None = None


@dataclass
class JournalGroup:
    """A pending, trusted journal and the problems its transaction explains."""

    journal: Problem  # the problem with code "journal" that reports it
    explained: list[Problem] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many of the explained problems have each code, in the order
        the check found them."""
        return dict(Counter(p.code for p in self.explained))


@dataclass
class KindGroup:
    """The problems of one code that no journal explains."""

    code: str
    problems: list[Problem] = field(default_factory=list)


@dataclass
class GroupedProblems:
    journals: list[JournalGroup]
    kinds: list[KindGroup]


@dataclass
class VerifyReport:
    problems: list[Problem] = field(default_factory=list)
    documents: int = 0
    concepts: int = 0
    files_checked: int = 0
    repaired: bool = False
    llm_cache_unused: int = 0  # LLM replies no document uses (openkb.llm.cache)
    llm_cache_pruned: int = 0  # ... deleted by repair

    @property
    def ok(self) -> bool:
        return all(p.repaired for p in self.problems)

    def add(self, code: str, path: str, message: str) -> None:
        self.problems.append(Problem(code, path, message))

    def grouped(self) -> GroupedProblems:
        """Problems under the journal that explains them, the rest by code
        (journals and codes in the order the check found them)."""
        journals: dict[str, JournalGroup] = {}
        for problem in self.problems:
            if problem.code == "journal" and problem.journal is not None:
                journals[problem.journal] = JournalGroup(problem)
        kinds: dict[str, KindGroup] = {}
        for problem in self.problems:
            group = journals.get(problem.journal or "")
            if group is not None:
                if problem is not group.journal:
                    group.explained.append(problem)
            else:
                kinds.setdefault(problem.code, KindGroup(problem.code)).problems.append(problem)
        return GroupedProblems(list(journals.values()), list(kinds.values()))
