"""Converters, chunking and key terms: what a user finds in the source and
summary pages and in search."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import corpus_dir
from pdfgen import make_encrypted_pdf, make_image_only_pdf, make_pdf

from openkb.errors import FileRejected
from openkb.prepare.analyze import lead_paragraph
from openkb.prepare.chunk import chunk_markdown
from openkb.prepare.convert_html import convert_html
from openkb.prepare.convert_markdown import convert_markdown
from openkb.prepare.convert_pdf import convert_pdf
from openkb.prepare.convert_text import convert_text
from openkb.prepare.decode import decode_text
from openkb.prepare.sniff import detect_kind
from openkb.prepare.terms import key_terms


class TestMarkdown:
    def test_title_outline_and_setext_headings(self) -> None:
        text = ("# Main *title*\n\nIntro text.\n\n## [Linked](http://x) part\n\n"
                "Setext\n------\n\n```\n# not a heading\n```\n")
        converted = convert_markdown(text)
        assert converted.title == "Main title"
        assert [(e.level, e.title) for e in converted.outline] == [
            (1, "Main title"), (2, "Linked part"), (2, "Setext")]
        assert converted.markdown == text  # the source page keeps the document as written

    def test_front_matter_title_wins(self) -> None:
        converted = convert_markdown("---\ntitle: 'From front matter'\ntags: [a]\n---\n# H1\n")
        assert converted.title == "From front matter"
        assert [e.title for e in converted.outline] == ["H1"]

    def test_deep_nesting_is_cheap(self) -> None:
        start = time.perf_counter()
        convert_markdown(">" * 100_000 + " deep\n" + "- " * 50_000 + "list\n")
        assert time.perf_counter() - start < 5


class TestText:
    def test_markdown_syntax_in_text_stays_text(self) -> None:
        converted = convert_text("Title line\n\n# not a heading\n- not a list\n1. nor this\n")
        assert converted.title == "Title line"
        assert converted.outline == []
        assert chunk_markdown(converted.markdown, 1000)[0].heading == ""
        assert "\\# not a heading" in converted.markdown

    def test_no_title_without_a_short_first_paragraph(self) -> None:
        assert convert_text("one long line\nthat continues\n").title is None


class TestHtml:
    def test_structure_and_dropped_parts(self) -> None:
        converted = convert_html(
            "<html><head><title>Page</title><script>var x = 1;</script></head><body>"
            "<h1>Top</h1><p>Para &amp; text</p><ul><li>one</li><li>two</li></ul>"
            "<table><tr><td>a</td><td>b</td></tr></table><pre>  code\n  block</pre>"
            "<style>p{}</style></body></html>")
        assert converted.title == "Page"
        assert [e.title for e in converted.outline] == ["Top"]
        md = converted.markdown
        assert "Para & text" in md and "- one" in md and "a | b" in md
        assert "```\n  code\n  block\n```" in md
        assert "var x" not in md and "p{}" not in md

    def test_deep_and_broken_markup(self) -> None:
        converted = convert_html("<div>" * 100_000 + "deep text" + "<p><b>unclosed")
        assert "deep text" in converted.markdown and "unclosed" in converted.markdown


class TestPdf:
    def test_text_title_and_bookmarks(self) -> None:
        data = make_pdf(["First page words", "Second page words"], title="A title",
                        outline=[("Start", 0), ("Later", 1)])
        converted = convert_pdf(data)
        assert converted.title == "A title" and converted.pages == 2
        assert [(e.title, e.page) for e in converted.outline] == [("Start", 1), ("Later", 2)]
        assert "## Page 2\n\nSecond page words" in converted.markdown

    @pytest.mark.parametrize(("data", "reason"), [
        (make_encrypted_pdf("secret", "pw"), "password is required"),
        (make_image_only_pdf(), "no extractable text"),
        (make_pdf(["x"])[:200], "malformed PDF"),
        (b"%PDF-1.4\n" + b"\x00garbage" * 100, "malformed PDF"),
    ])
    def test_unusable_pdfs_are_rejected_with_a_reason(self, data: bytes, reason: str) -> None:
        with pytest.raises(FileRejected, match=reason):
            convert_pdf(data)

    @pytest.mark.heavy
    def test_every_sample_pdf_converts_or_is_rejected_cleanly(self) -> None:
        root = corpus_dir("pdf-sample-files")
        rejected = {}
        for path in sorted(root.rglob("*.pdf")):
            try:
                assert convert_pdf(path.read_bytes()).markdown.strip(), path
            except FileRejected as exc:
                assert str(exc)
                rejected[path.name] = str(exc)
        # Encrypted, malformed and image-only samples; see files.json.
        assert "libreoffice-writer-password.pdf" in rejected
        assert len(rejected) < 10, rejected


class TestSniffAndDecode:
    def test_a_pdf_that_is_html_is_rejected(self) -> None:
        with pytest.raises(FileRejected, match=r"not a PDF \(looks like HTML"):
            detect_kind("x.pdf", b"<!DOCTYPE html><html>")

    def test_binary_named_markdown_is_rejected(self) -> None:
        with pytest.raises(FileRejected, match="binary"):
            detect_kind("x.md", bytes(range(256)) * 4)

    @pytest.mark.parametrize("data", [
        "héllo wörld\n".encode("utf-8-sig"), "héllo wörld\n".encode("utf-16"),
        "héllo wörld\n".encode("utf-16-be"), "héllo wörld\n".encode("utf-16-le"),
        "héllo wörld\r\n".encode("cp1252"), "héllo\x00 wörld\n".encode(),
    ])
    def test_encodings_decode_to_the_same_text(self, data: bytes) -> None:
        assert decode_text(data).replace("\x00", "") == "héllo wörld\n"

    def test_control_characters_are_dropped(self) -> None:
        assert decode_text(b"a\x02b\x03c\x1bd") == "abcd"


class TestChunksAndTerms:
    def test_chunks_follow_headings_and_respect_the_size(self) -> None:
        text = "# Top\n\nintro\n\n## Part\n\n" + ("word " * 1000) + "\n\n```\n# code\n```\n"
        chunks = chunk_markdown(text, 300)
        assert chunks[0].heading == "Top" and chunks[0].text == "intro"
        assert all(c.heading == "Top › Part" for c in chunks[1:])
        assert all(len(c.text) <= 300 for c in chunks)
        assert [c.ord for c in chunks] == list(range(len(chunks)))

    def test_a_huge_single_line_is_linear(self) -> None:
        start = time.perf_counter()
        chunks = chunk_markdown("x" * 5_000_000, 1500)
        assert len(chunks) == 3334 and time.perf_counter() - start < 5

    def test_key_terms_prefer_repeated_phrases_and_skip_stopwords(self) -> None:
        text = ("# Attention heads\n\nThe attention heads attend. Attention heads again, "
                "and the model uses attention heads. However the data is there.\n")
        terms = key_terms(text, "Attention heads", 5)
        assert terms[0] == "attention heads"
        assert "however" not in terms and "the" not in terms
        assert terms == key_terms(text, "Attention heads", 5)

    def test_lead_paragraph_skips_headings_lists_and_code(self) -> None:
        text = "# Title\n\n- a list item here\n\n```\ncode block here\n```\n\nThe *real* " \
               "[lead](http://x) paragraph starts here.\n"
        assert lead_paragraph(text) == "The real lead paragraph starts here."


def test_examples_build_a_kb_with_shared_concepts(tmp_path: Path) -> None:
    from openkb import api
    from openkb.progress import Progress

    examples = Path(__file__).resolve().parents[1] / "examples"
    api.init(str(tmp_path / "kb"))
    report = api.add(str(tmp_path / "kb"), [str(examples)], Progress(), jobs=1)
    assert not report.failed and len(report.added) == 5
    assert (tmp_path / "kb" / "wiki" / "concepts" / "attention-heads.md").is_file()
    assert len(api.search(str(tmp_path / "kb"), "attention heads", Progress())) >= 4
