"""Converters: what a user finds on a document's source page and in its
outline, for each format, on normal and on awkward input. Chunks, key terms
and lead paragraphs are in test_chunk_terms.py; broken files end to end in
test_hostile.py."""

from __future__ import annotations

import io
import random
import re
import time
from pathlib import Path

import pytest
from conftest import CORPUS, corpus_dir
from markdown_it import MarkdownIt
from pdfgen import (
    make_aes_pdf,
    make_encrypted_pdf,
    make_form_pdf,
    make_image_only_pdf,
    make_pdf,
    make_scanned_pdf,
)
from pypdf import PdfReader

from openkb.errors import FileRejected
from openkb.prepare.chunk import chunk_markdown
from openkb.prepare.convert_html import convert_html
from openkb.prepare.convert_markdown import convert_markdown, heading_lines
from openkb.prepare.convert_pdf import convert_pdf
from openkb.prepare.convert_text import convert_text, escape_text
from openkb.prepare.decode import decode_text
from openkb.prepare.pdf_text import ENGINES, read_structure
from openkb.prepare.sniff import detect_kind

COMMONMARK = MarkdownIt("commonmark")
_PLAIN_BLOCKS = {"paragraph_open", "paragraph_close", "inline"}
_PLAIN_INLINE = {"text", "softbreak"}


def block_types(markdown: str) -> set[str]:
    """The kinds of block and inline element a Markdown renderer makes of it."""
    tokens = COMMONMARK.parse(markdown)
    return {t.type for t in tokens} | {c.type for t in tokens for c in t.children or []}


class TestPdfgen:
    """The hand-written PDFs the other tests rely on are valid PDFs."""

    def test_pypdf_reads_text_title_and_outline_back_strictly(self) -> None:
        data = make_pdf(["Page (one) with a back\\slash", "Page two"], title="A (title)",
                        outline=[("Start (here)", 0), ("Second", 1)])
        reader = PdfReader(io.BytesIO(data), strict=True)
        assert reader.metadata.title == "A (title)"
        assert [p.extract_text().strip() for p in reader.pages] == [
            "Page (one) with a back\\slash", "Page two"]
        assert [(o.title, reader.get_destination_page_number(o)) for o in reader.outline] == [
            ("Start (here)", 0), ("Second", 1)]

    def test_xref_offsets_point_at_their_objects(self) -> None:
        data = make_pdf(["a", "b", "c"], title="t", outline=[("x", 2)], compress=True)
        xref = data[int(data.rsplit(b"startxref\n", 1)[1].split()[0]):]
        entries = re.findall(rb"(\d{10}) 00000 n", xref)
        assert len(entries) > 8
        for number, offset in enumerate(entries, 1):
            assert data[int(offset):].startswith(f"{number} 0 obj".encode()), number

    def test_encrypted_and_image_only_variants(self) -> None:
        locked = PdfReader(io.BytesIO(make_encrypted_pdf("secret words", "pw")))
        assert locked.is_encrypted and locked.decrypt("pw")
        assert "secret words" in locked.pages[0].extract_text()
        blank = PdfReader(io.BytesIO(make_image_only_pdf()), strict=True)
        assert blank.pages[0].extract_text().strip() == ""


class TestMarkdown:
    def test_title_outline_and_setext_headings(self) -> None:
        text = ("# Main *title*\n\nIntro text.\n\n## [Linked](http://x) part\n\n"
                "Setext\n------\n\n```\n# not a heading\n```\n")
        converted = convert_markdown(text)
        assert converted.title == "Main title"
        assert [(e.level, e.title) for e in converted.outline] == [
            (1, "Main title"), (2, "Linked part"), (2, "Setext")]
        assert converted.markdown == text  # the source page keeps the document as written

    def test_front_matter_title_wins_and_heading_lines_count_it(self) -> None:
        text = "---\ntitle: 'From front matter'\ntags: [a]\n---\n# H1\n\nbody\n\nSub\n===\n"
        converted = convert_markdown(text)
        assert converted.title == "From front matter"
        assert [e.title for e in converted.outline] == ["H1", "Sub"]
        lines = text.split("\n")
        assert [(lines[first], after - first) for first, after, _, _ in heading_lines(text)] \
            == [("# H1", 1), ("Sub", 2)]

    def test_without_a_level_one_heading_there_is_no_title(self) -> None:
        assert convert_markdown("## Only a section\n\ntext\n").title is None

    def test_headings_in_code_quotes_and_html_are_not_the_outline(self) -> None:
        text = ("~~~~\n# fenced\n~~~\n# still fenced\n~~~~\n\n    # indented code\n\n"
                "<div>\n# in html\n</div>\n\n> # Quoted\n\n# Real\n")
        assert [e.title for e in convert_markdown(text).outline] == ["Quoted", "Real"]

    def test_deep_nesting_is_cheap(self) -> None:
        start = time.perf_counter()
        convert_markdown(">" * 100_000 + " deep\n" + "- " * 100_000 + "list\n"
                         + "> - " * 50_000 + "mixed\n")
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
        assert convert_text("x" * 200 + "\n\nbody\n").title is None

    def test_no_line_of_text_renders_as_markup(self) -> None:
        """Random text built from every line that Markdown would read as
        structure renders as paragraphs of plain text, nothing else."""
        tricky = ["Title", "--", "===", "# h", "#h", "> q", "- a", "* b", "+ c", "1. d",
                  "2) e", "***", "___", "- - -", "```", "~~~", "<div>", "| t |",
                  "[1]: http://example.com", "[a] b", "  # h2", "   > q", "",
                  "text <b>bold</b> <!-- c --> a<b and <?php x", "<http://example.com>"]
        rng = random.Random(5)
        for _ in range(2000):
            text = "\n".join(rng.choice(tricky) for _ in range(rng.randint(1, 6)))
            kinds = block_types(escape_text(text))
            assert kinds <= _PLAIN_BLOCKS | _PLAIN_INLINE, (text, kinds)

    def test_escaping_keeps_every_character(self) -> None:
        text = "# a\n> b\n1. c\n<d> e\n--\n[f]: g\n"
        assert escape_text(text).replace("\\", "") == text


class TestHtml:
    def test_structure_and_dropped_parts(self) -> None:
        converted = convert_html(
            "<html><head><title>Page</title><script>var x = 1;</script></head><body>"
            "<h1>Top</h1><p>Para &amp; text</p><ul><li>one</li><li>two</li></ul>"
            "<table><tr><td>a</td><td>b</td></tr></table><pre>  code\n  block</pre>"
            "<style>p{}</style><noscript>enable js</noscript></body></html>")
        assert converted.title == "Page"
        assert [e.title for e in converted.outline] == ["Top"]
        md = converted.markdown
        assert "Para & text" in md and "- one\n\n- two" in md and "a | b" in md
        assert "```\n  code\n  block\n```" in md
        assert "var x" not in md and "p{}" not in md and "enable js" not in md

    def test_the_first_h1_is_the_title_when_there_is_no_title_tag(self) -> None:
        converted = convert_html("<h2>Minor</h2><h1>Major</h1><p>text</p>")
        assert converted.title == "Major"
        assert converted.markdown.startswith("## Minor")

    def test_an_svg_title_is_not_the_page_title(self) -> None:
        converted = convert_html("<title>Page</title><body><svg><title>icon</title></svg>"
                                 "<p>body</p></body>")
        assert converted.title == "Page" and "icon" not in converted.markdown

    def test_text_that_looks_like_markdown_stays_text(self) -> None:
        converted = convert_html("<p># not a heading</p><p>1. not a list</p>"
                                 "<p>&lt;b&gt;not bold&lt;/b&gt;</p><li># item</li>"
                                 "<h2>C# &lt;i&gt;</h2>")
        assert [e.title for e in converted.outline] == ["C# <i>"]
        kinds = block_types(converted.markdown)
        assert "heading_open" in kinds and "html_inline" not in kinds
        assert [c.heading for c in chunk_markdown(converted.markdown, 1000)] == ["", "C# <i>"]

    def test_a_pre_holding_a_fence_stays_one_code_block(self) -> None:
        converted = convert_html("<pre>a\n```\n# fake heading\n```</pre><p>after</p>")
        assert converted.outline == []
        assert [c.heading for c in chunk_markdown(converted.markdown, 1000)] == [""]
        assert next(t.type for t in COMMONMARK.parse(converted.markdown)) == "fence"

    def test_optional_end_tags_lose_no_text(self) -> None:
        converted = convert_html("<h1>Head<p>para text<table><tr><td>a<td>b<tr><td>c"
                                 "</table><p>after<li>item")
        assert converted.markdown == "# Head\n\npara text\n\na | b\n\nc\n\nafter\n\n- item\n"

    def test_an_unclosed_title_does_not_swallow_the_page(self) -> None:
        converted = convert_html("<title>Page<body><p>body text here</p>")
        assert "body text here" in converted.markdown
        assert converted.title is None or len(converted.title) < 20

    def test_deep_and_broken_markup(self) -> None:
        converted = convert_html("<div>" * 100_000 + "deep text" + "<p><b>unclosed")
        assert "deep text" in converted.markdown and "unclosed" in converted.markdown
        converted = convert_html("<table><tr><td>" * 20_000 + "cell" + "<ul><li>" * 20_000
                                 + "item")
        assert "cell" in converted.markdown and "item" in converted.markdown


@pytest.mark.parametrize("engine", ENGINES)
class TestPdf:
    """Both text engines give the same conversion of these small PDFs."""

    def test_text_title_and_bookmarks(self, engine: str) -> None:
        data = make_pdf(["First page words", "Second page words"], title="A title",
                        outline=[("Start", 0), ("Later", 1)])
        converted = convert_pdf(data, engine=engine)
        assert converted.title == "A title" and converted.pages == 2
        assert [(e.title, e.page) for e in converted.outline] == [("Start", 1), ("Later", 2)]
        assert converted.markdown.startswith("# A title\n\n## Page 1\n\nFirst page words")
        assert "## Page 2\n\nSecond page words" in converted.markdown

    def test_page_text_that_looks_like_markdown_stays_text(self, engine: str) -> None:
        converted = convert_pdf(make_pdf(["# 1. Intro\n- (a) item\n> quoted"],
                                         title="Untitled"), engine=engine)
        assert converted.title is None  # placeholder titles are not titles
        assert [c.heading for c in chunk_markdown(converted.markdown, 1000)] == ["Page 1"]
        assert "\\# 1. Intro" in converted.markdown and "(a) item" in converted.markdown

    def test_compressed_pages_and_empty_pages_between(self, engine: str) -> None:
        converted = convert_pdf(make_pdf(["one", "", "three"], compress=True), engine=engine)
        assert converted.pages == 3
        assert converted.markdown == "## Page 1\n\none\n\n## Page 3\n\nthree\n"

    @pytest.mark.parametrize(("data", "reason"), [
        (make_encrypted_pdf("secret", "pw"), "encrypted PDF: a password is required"),
        (make_image_only_pdf(), "no extractable text: its pages are empty"),
        (make_scanned_pdf(), r"no extractable text: the PDF holds only images \(scanned\?\)"),
        (make_pdf(["x"])[:200], "malformed PDF"),
        (b"%PDF-1.4\n" + b"\x00garbage" * 100, "malformed PDF"),
        (make_pdf([]), "PDF has no pages"),
    ], ids=["encrypted", "drawing-only", "scanned", "truncated", "garbage", "no-pages"])
    def test_unusable_pdfs_are_rejected_with_a_reason(self, data: bytes, reason: str,
                                                      engine: str) -> None:
        with pytest.raises(FileRejected, match=reason):
            convert_pdf(data, engine=engine)

    @pytest.mark.parametrize("damage", [
        lambda d: d.replace(b"0000000009 00000 n", b"0000000001 00000 n"),
        lambda d: d[:d.rindex(b"startxref")] + b"startxref\n12\n%%EOF\n",
        lambda d: d.replace(b"\n", b"\r\n"),
    ], ids=["wrong-xref-offset", "wrong-startxref", "crlf-rewritten"])
    def test_damaged_cross_references_are_rebuilt(self, damage, engine: str) -> None:
        converted = convert_pdf(damage(make_pdf(["words that survive"])), engine=engine)
        assert "words that survive" in converted.markdown

    @pytest.mark.parametrize("tenths", range(1, 10))
    def test_a_truncated_pdf_is_named_as_such(self, tenths: int, engine: str) -> None:
        data = make_pdf(["some words", "more words"], title="t", outline=[("x", 1)])
        with pytest.raises(FileRejected, match=r"malformed PDF: truncated"):
            convert_pdf(data[:len(data) * tenths // 10], engine=engine)


    def test_form_fields_and_notes_are_the_text_of_a_page_without_any(self,
                                                                       engine: str) -> None:
        data = make_form_pdf({"name": "Ada Lovelace", "topic": "analytical engine"},
                             note="reviewed in March")
        converted = convert_pdf(data, engine=engine)
        assert converted.markdown == ("## Page 1\n\nAda Lovelace\nanalytical engine\n"
                                      "reviewed in March\n")

    def test_aes_encryption_with_an_empty_user_password_opens(self, engine: str) -> None:
        converted = convert_pdf(make_aes_pdf("words behind AES"), engine=engine)
        assert converted.title == "Locked" and "words behind AES" in converted.markdown


# Samples of ../shared/corpus/pdf-sample-files that openkb cannot ingest, and
# why (files.json: 005 is encrypted, 007/019/023 hold only images, 017 has a
# broken page tree). Every other sample must convert.
EXPECTED_REJECTIONS = {
    "libreoffice-writer-password.pdf": "encrypted PDF: a password is required",
    "imagemagick-ASCII85Decode.pdf": "no extractable text",
    "imagemagick-CCITTFaxDecode.pdf": "no extractable text",
    "imagemagick-lzw.pdf": "no extractable text",
    "grayscale-image.pdf": "no extractable text",
    "cmyk-image.pdf": "no extractable text",
    "unreadablemetadata.pdf": "malformed PDF: cannot read its pages",
}


def _sample_pdfs() -> list:
    root = CORPUS / "pdf-sample-files"
    paths = sorted(root.rglob("*.pdf")) if root.is_dir() else []
    if not paths:
        return [pytest.param(None, id="corpus-absent")]
    return [pytest.param(p.relative_to(root).as_posix(), id=p.name,
                         marks=[pytest.mark.heavy] if p.stat().st_size > 1_000_000 else [])
            for p in paths]


@pytest.mark.corpus
@pytest.mark.parametrize("sample", _sample_pdfs())
def test_sample_pdf_converts_or_is_rejected_with_its_reason(sample: str | None) -> None:
    root = corpus_dir("pdf-sample-files")
    if sample is None:
        pytest.skip(f"{root} holds no PDFs")
    path = root / sample
    expected = EXPECTED_REJECTIONS.get(path.name)
    if expected is None:
        converted = convert_pdf(path.read_bytes())  # any exception fails the test
        assert re.search(r"\w", converted.markdown), path
        assert converted.pages and converted.pages >= 1
    else:
        with pytest.raises(FileRejected, match=re.escape(expected)):
            convert_pdf(path.read_bytes())


@pytest.mark.corpus
@pytest.mark.parametrize("sample", _sample_pdfs())
def test_both_engines_read_the_same_title_and_outline(sample: str | None) -> None:
    """PDFium reads the structure in the default path; pypdf did in 0.1 and
    still does as the fallback: a KB must not change shape with the engine."""
    root = corpus_dir("pdf-sample-files")
    if sample is None:
        pytest.skip(f"{root} holds no PDFs")
    data = (root / sample).read_bytes()
    pdfium, pypdf = (read_structure(data, engine=e) for e in ("pdfium", "pypdf"))
    assert pdfium.outline == pypdf.outline
    if pypdf.title is not None:
        assert pdfium.title == pypdf.title


@pytest.mark.corpus
def test_sample_pdf_bookmarks_carry_levels_and_pages() -> None:
    root = corpus_dir("pdf-sample-files")
    flat = convert_pdf((root / "006-pdflatex-outline" / "pdflatex-outline.pdf").read_bytes())
    assert [(e.level, e.title, e.page) for e in flat.outline[:5]] == [
        (1, "Foo", 2), (1, "Bar", 2), (1, "Baz", 2), (1, "Foo", 2), (1, "Bar", 3)]
    nested = convert_pdf((root / "014-outlines" / "mistitled_outlines_example.pdf")
                         .read_bytes())
    assert [(e.level, e.title, e.page) for e in nested.outline[:6]] == [
        (1, "First", 2), (2, "Second", 2), (2, "Third", 2), (2, "Fourth", 2),
        (3, "Fifth", 3), (3, "Sixth", 3)]


class TestSniffAndDecode:
    def test_a_pdf_that_is_html_is_rejected(self) -> None:
        with pytest.raises(FileRejected, match=r"not a PDF \(looks like HTML"):
            detect_kind("x.pdf", b"<!DOCTYPE html><html>")

    def test_a_pdf_named_html_is_rejected(self) -> None:
        with pytest.raises(FileRejected, match=r"named \.html but holds binary data"):
            detect_kind("x.html", make_pdf(["x"], compress=True)[:4096])

    def test_binary_named_markdown_is_rejected(self) -> None:
        with pytest.raises(FileRejected, match="binary"):
            detect_kind("x.md", bytes(range(256)) * 4)

    @pytest.mark.parametrize("data", [
        "héllo wörld\n".encode("utf-8-sig"), "héllo wörld\n".encode("utf-16"),
        "\ufeffhéllo wörld\n".encode("utf-16-be"), "\ufeffhéllo wörld\n".encode("utf-16-le"),
        "héllo wörld\n".encode("utf-16-le"), "\ufeffhéllo wörld\n".encode("utf-32-le"),
        "héllo wörld\r\n".encode("cp1252"), "héllo\x00 wörld\n".encode(),
        "héllo wörld\r".encode(),
    ], ids=["utf8-bom", "utf16-native-bom", "utf16be-bom", "utf16le-bom", "utf16le-no-bom",
            "utf32le-bom", "cp1252-crlf", "nul", "cr"])
    def test_encodings_decode_to_the_same_text(self, data: bytes) -> None:
        assert decode_text(data) == "héllo wörld\n"

    def test_a_stray_bad_byte_does_not_turn_utf8_into_mojibake(self) -> None:
        data = "naïve café, crème brûlée ".encode() + b"\x80 and more\n"
        assert decode_text(data) == "naïve café, crème brûlée \ufffd and more\n"

    def test_control_characters_are_dropped(self) -> None:
        assert decode_text(b"a\x02b\x03c\x1bd\te\n") == "abcd\te\n"


def test_examples_build_a_kb_with_shared_concepts(tmp_path: Path) -> None:
    from openkb import api
    from openkb.progress import Progress

    examples = Path(__file__).resolve().parents[1] / "examples"
    api.init(str(tmp_path / "kb"))
    report = api.add(str(tmp_path / "kb"), [str(examples)], Progress(), jobs=1)
    documents = sorted(p.name for p in examples.iterdir() if p.suffix != ".py")
    assert not report.failed and len(report.added) == len(documents) >= 5
    concepts = tmp_path / "kb" / "wiki" / "concepts"
    for concept in ("attention-heads", "self-attention", "transformer"):
        assert (concepts / f"{concept}.md").is_file(), sorted(p.name for p in concepts.iterdir())
    hits = api.search(str(tmp_path / "kb"), "attention heads", Progress())
    assert len({hit.doc for hit in hits}) >= 4


def test_the_example_pdf_is_what_its_script_writes() -> None:
    import runpy

    examples = Path(__file__).resolve().parents[1] / "examples"
    script = runpy.run_path(str(examples / "make_example_pdf.py"))
    assert script["build"]() == (examples / "attention-survey.pdf").read_bytes()
