"""The compiled wiki a reader keeps: key terms weighed against the KB,
inflections under one concept, near-copies known, concept pages with
context, related documents; the same bytes from a recompile as from the
commits, and from an upgrade of a KB an earlier openkb wrote."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import ROOT, tree_hash, verify_ok, write_tree

from openkb import api
from openkb.keyterms import choose_terms
from openkb.model import DocumentInfo, TermCandidate
from openkb.prepare import minhash
from openkb.prepare.terms import candidate_terms, term_key
from openkb.progress import Progress

# The last openkb before this format: what `recompile` must bring up.
PREVIOUS_MAIN = "339f44c"


def _doc(title: str, body: str) -> str:
    return f"# {title}\n\n{body}\n"


COOKIES = {
    "browsers.md": _doc("Browsers", "A cookie is a small piece of data a browser keeps for a site. "
                        "Browsers send cookies back with each request. Session cookies end "
                        "with the session; the browser drops session cookies on exit. "
                        "Rendering engines and tab sandboxes are other parts of a browser."),
    "servers.md": _doc("Servers", "A server sets a cookie with a header. The server reads the "
                       "cookie on the next request to find the session. Session cookies carry "
                       "a session identifier; servers rotate session cookies after login. "
                       "Load balancers spread requests across servers."),
    "privacy.md": _doc("Privacy", "Tracking relies on third-party cookies. A tracker sets a "
                       "cookie on many sites and reads it everywhere. Blocking third-party "
                       "cookies stops most tracking; session cookies are left alone. "
                       "Consent banners ask before any tracking starts."),
    "storage.md": _doc("Storage", "Local storage keeps data per origin without expiry. Unlike "
                       "a cookie, local storage is never sent to the server. Session storage "
                       "lasts one tab; session cookies last the browser session. Quotas "
                       "limit local storage per origin."),
}


def _add(kb: Path, docs: Path, jobs: int = 1) -> None:
    report = api.add(str(kb), [str(docs)], Progress(), jobs=jobs)
    assert not report.failed, report.failed


def _wiki(kb: Path) -> dict[str, bytes]:
    wiki = kb / "wiki"
    return {str(p.relative_to(wiki)): p.read_bytes() for p in sorted(wiki.rglob("*.md"))
            if p.name != "log.md"}


# -- key terms -------------------------------------------------------------------------


def test_inflections_share_one_concept_titled_by_the_commoner_form(kb: Path,
                                                                     tmp_path: Path) -> None:
    _add(kb, write_tree(tmp_path / "docs", COOKIES))
    concepts = kb / "wiki" / "concepts"
    page = concepts / f"{term_key('session cookies').replace(' ', '-')}.md"
    assert page.is_file(), sorted(p.name for p in concepts.iterdir())
    assert page.read_text().startswith("# session cookies\n")
    names = {p.stem for p in concepts.iterdir()}
    # "cookie" and "cookies" are one key, so one page at most.
    assert not ({"cookie", "cookies"} & names)
    verify_ok(kb)


def test_a_term_in_most_documents_is_not_a_key_term() -> None:
    common = TermCandidate("data", "data", 50.0, "")
    rare = TermCandidate("quasar", "quasar", 5.0, "")
    info = DocumentInfo(title="x", kind="text", candidates=[common, rare], term_quota=2)
    df = {"data": 90, "quasar": 2}
    assert [c.key for c in choose_terms(info, df.__getitem__, 100)] == ["quasar"]
    # In a young KB shares mean little: both stay, by weight.
    assert [c.key for c in choose_terms(info, {"data": 3, "quasar": 1}.__getitem__, 3)] == [
        "data", "quasar"]


def test_a_word_goes_when_a_phrase_holding_it_covers_the_same_documents() -> None:
    word = TermCandidate("attent", "attention", 6.0, "")
    phrase = TermCandidate("attent head", "attention heads", 10.0, "")
    info = DocumentInfo(title="x", kind="text", candidates=[word, phrase], term_quota=5)
    same = {"attent": 4, "attent head": 4}
    assert [c.key for c in choose_terms(info, same.__getitem__, 10)] == ["attent head"]
    wider = {"attent": 7, "attent head": 4}
    assert {c.key for c in choose_terms(info, wider.__getitem__, 10)} == {"attent",
                                                                         "attent head"}


def test_bare_verbs_are_not_candidates() -> None:
    text = ("The parser accepts input. It accepts files and it accepts streams. "
            "The tokenizer feeds the parser; the parser builds trees.\n")
    keys = {c.key for c in candidate_terms(text, "x", 20)}
    assert term_key("parser") in keys
    assert term_key("accepts") not in keys


def test_the_sentence_that_defines_a_term_is_found() -> None:
    text = ("Some words about tokens come first here. A token is the smallest unit a "
            "lexer emits. Tokens flow onward; tokens matter.\n")
    (token,) = [c for c in candidate_terms(text, "x", 10) if c.key == term_key("token")]
    assert token.defines and token.context.startswith("A **token** is the smallest unit")


# -- near-copies -----------------------------------------------------------------------


def test_minhash_is_stable_and_tells_near_copies_from_strangers() -> None:
    base = " ".join(f"word{i} filler{i % 7}" for i in range(400))
    edited = base.replace("word17 ", "changed ").replace("word300 ", "other ")
    stranger = " ".join(f"other{i} thing{i % 5}" for i in range(400))
    assert minhash.similarity(minhash.signature(base), minhash.signature(edited)) >= 0.7
    assert minhash.similarity(minhash.signature(base), minhash.signature(stranger)) < 0.2
    # No per-process hash seed: the same text gives the same signature anywhere.
    code = "from openkb.prepare.minhash import signature; print(signature('a b c d e f')[:3])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONHASHSEED": "123"}, check=True).stdout
    assert out.strip() == str(minhash.signature("a b c d e f")[:3])


def test_near_copies_alone_make_no_concept_and_summaries_name_them(kb: Path,
                                                                  tmp_path: Path) -> None:
    body = ("Quantum annealing finds low energy states. " * 3 + "The annealing schedule "
            "matters; a slow annealing schedule helps. Qubits couple through couplers. ") * 4
    docs = write_tree(tmp_path / "docs", {
        "v1.md": _doc("Annealing v1", body),
        "v2.md": _doc("Annealing v2", body + " One more line for version two."),
    })
    _add(kb, docs)
    slug = term_key("annealing schedule").replace(" ", "-")
    assert not (kb / "wiki" / "concepts" / f"{slug}.md").exists()
    assert "## Near-copies" in (kb / "wiki" / "summaries" / "v1.md").read_text()
    assert "[[summaries/v2|" in (kb / "wiki" / "summaries" / "v1.md").read_text()
    other = write_tree(tmp_path / "other", {"survey.md": _doc(
        "Survey", "We compare solvers. The annealing schedule decides quality; an adaptive "
        "annealing schedule wins on our benchmarks, and couplers limit it.")})
    _add(kb, other)
    assert (kb / "wiki" / "concepts" / f"{slug}.md").is_file()
    verify_ok(kb)


# -- concept and summary pages -----------------------------------------------------------


def test_concept_pages_quote_each_document_and_lead_with_a_definition(
        kb: Path, tmp_path: Path) -> None:
    _add(kb, write_tree(tmp_path / "docs", COOKIES))
    text = (kb / "wiki" / "concepts" / f"{term_key('cookies')}.md").read_text()
    head, _, lines = text.partition("Documents with this key term, oldest first:\n\n")
    title, _, head = head.partition("\n\n")
    assert title in ("# cookie", "# cookies")
    assert head.startswith("> “A **cookie** is a small piece of data")
    # Related concepts are the terms its first two documents both have:
    # "session cookies" comes in Browsers and Servers, both with "cookie".
    shared = (kb / "wiki" / "concepts" / f"{term_key('session cookies').replace(' ', '-')}.md")
    assert f"Related concepts: [[concepts/{term_key('cookies')}|" in shared.read_text()
    entries = lines.splitlines()
    assert len(entries) >= 3 and all(": “" in line for line in entries)
    related = [(kb / "wiki" / "summaries" / f"{name}.md").read_text() for name in
               ("browsers", "servers", "privacy", "storage")]
    assert all("## Related" in page for page in related)


def test_a_document_joining_a_grown_concept_appends_its_line(kb: Path,
                                                             tmp_path: Path) -> None:
    _add(kb, write_tree(tmp_path / "docs", COOKIES))
    page = kb / "wiki" / "concepts" / f"{term_key('cookies')}.md"
    before = page.read_bytes()
    _add(kb, write_tree(tmp_path / "more", {"jar.md": _doc(
        "Cookie jars", "A cookie jar in an HTTP client keeps each cookie between requests. "
        "The jar drops an expired cookie. Clients share one jar per session.")}))
    after = page.read_bytes()
    assert after.startswith(before) and b"[[summaries/jar|" in after[len(before):]
    verify_ok(kb)


def test_recompile_gives_the_bytes_the_commits_wrote(kb: Path, tmp_path: Path) -> None:
    docs = write_tree(tmp_path / "docs", COOKIES)
    write_tree(docs, {"copy/browsers.md": COOKIES["browsers.md"] + "\nA trailing note.\n"})
    _add(kb, docs, jobs=2)
    written, hashed = _wiki(kb), tree_hash(kb)
    assert any(name.startswith("concepts/") for name in written)
    # One document per commit, in one process: the same KB as groups from two.
    other = tmp_path / "kb-jobs1"
    api.init(str(other))
    (other / ".openkb" / "config.yaml").write_text("commit_group_size: 1\n")
    _add(other, docs, jobs=1)
    assert tree_hash(other) == hashed
    api.recompile(str(kb), Progress())
    assert _wiki(kb) == written


def test_verify_finds_a_broken_near_copy_record_and_repair_mends_it(
        kb: Path, tmp_path: Path) -> None:
    docs = write_tree(tmp_path / "docs", COOKIES)
    write_tree(docs, {"copy.md": COOKIES["browsers.md"] + "\nA trailing note.\n"})
    _add(kb, docs)
    import sqlite3
    with sqlite3.connect(kb / ".openkb" / "kb.sqlite") as conn:
        conn.execute("DELETE FROM near_copies WHERE doc = 'copy'")
    report = api.verify(str(kb), Progress())
    assert any(p.code == "terms" and "one way" in p.message for p in report.problems)
    api.verify(str(kb), Progress(), repair=True)
    verify_ok(kb)


def test_the_document_count_is_kept_through_adds_and_removes_and_repair_mends_it(
        kb: Path, tmp_path: Path) -> None:
    """Key terms are weighed by the KB's document count, kept in the
    registry (count(*) would read every row on every commit)."""
    import sqlite3

    def kept() -> int:
        with sqlite3.connect(kb / ".openkb" / "kb.sqlite") as conn:
            return int(conn.execute("SELECT value FROM meta WHERE key = 'document_count'")
                       .fetchone()[0])

    _add(kb, write_tree(tmp_path / "docs", COOKIES))
    assert kept() == 4
    api.remove(str(kb), ["privacy"], Progress())
    assert kept() == 3
    with sqlite3.connect(kb / ".openkb" / "kb.sqlite") as conn:
        conn.execute("UPDATE meta SET value = '7' WHERE key = 'document_count'")
    report = api.verify(str(kb), Progress())
    assert any(p.code == "terms" and "document count" in p.message for p in report.problems)
    api.verify(str(kb), Progress(), repair=True)
    verify_ok(kb)
    assert kept() == 3


# -- upgrade -----------------------------------------------------------------------------


@pytest.mark.heavy
def test_a_kb_the_previous_openkb_built_is_brought_up_by_its_first_command(
        tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is needed to check out the previous openkb")
    archive = tmp_path / "previous.tar"
    made = subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive),
                           PREVIOUS_MAIN], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"commit {PREVIOUS_MAIN} is not in this checkout: {made.stderr.strip()}")
    previous = tmp_path / "previous"
    with tarfile.open(archive) as tar:
        tar.extractall(previous, filter="data")
    docs = write_tree(tmp_path / "docs", COOKIES)
    kb = tmp_path / "kb"
    for args in (["init", str(kb)], ["--kb", str(kb), "add", str(docs), "--jobs", "1"]):
        subprocess.run([sys.executable, "-m", "openkb", *args], cwd=previous, check=True,
                       capture_output=True, env={**os.environ, "PYTHONPATH": str(previous)})
    old_page = kb / "wiki" / "concepts" / "session-cookies.md"
    assert old_page.is_file()  # the old format: slugs of surface forms, bare link lists

    api.list_documents(str(kb), Progress())  # migrates, then recompiles
    verify_ok(kb)
    assert not old_page.exists()
    page = kb / "wiki" / "concepts" / f"{term_key('session cookies').replace(' ', '-')}.md"
    assert ": “" in page.read_text()
    fresh = tmp_path / "fresh"
    api.init(str(fresh))
    _add(fresh, docs)
    assert _wiki(kb) == _wiki(fresh)
    _add(kb, write_tree(tmp_path / "more", {"jar.md": COOKIES["storage.md"] + "\nJars.\n"}))
    verify_ok(kb)
