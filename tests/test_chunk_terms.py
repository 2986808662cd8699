"""Search chunks, key terms and lead paragraphs: what `openkb search` returns
for a passage, which concept pages a document joins, and the summary line."""

from __future__ import annotations

import random
import re
import time

from openkb.prepare.analyze import lead_paragraph
from openkb.prepare.chunk import PATH_SEPARATOR, chunk_markdown
from openkb.prepare.convert_markdown import convert_markdown
from openkb.prepare.convert_text import convert_text
from openkb.prepare.stage import clean_terms
from openkb.prepare.terms import key_terms


def chunks_of(markdown: str, max_chars: int = 1500) -> list[tuple[str, str]]:
    """(heading path, text) of each chunk, as a user Markdown file gets them."""
    converted = convert_markdown(markdown)
    return [(c.heading, c.text)
            for c in chunk_markdown(markdown, max_chars, converted.heading_lines)]


class TestChunks:
    def test_heading_paths_follow_the_nesting(self) -> None:
        text = ("# Guide\n\nintro\n\n## Install\n\nsteps\n\n### Linux\n\napt\n\n"
                "## Use\n\nrun it\n\n# Appendix\n\nmore\n")
        assert [h for h, _ in chunks_of(text)] == [
            "Guide", "Guide › Install", "Guide › Install › Linux", "Guide › Use", "Appendix"]
        assert [t for _, t in chunks_of(text)] == ["intro", "steps", "apt", "run it", "more"]

    def test_text_before_the_first_heading_has_an_empty_path(self) -> None:
        assert chunks_of("preamble\n\n# Head\n\nbody\n") == [("", "preamble"), ("Head", "body")]

    def test_a_heading_without_text_is_still_found_by_its_words(self) -> None:
        assert chunks_of("# Empty section\n\n## Next\n\nbody\n") == [
            ("Empty section", "Empty section"), ("Empty section › Next", "body")]

    def test_setext_headings_start_sections_and_leave_no_underline(self) -> None:
        text = "Title\n=====\n\nintro text\n\nPart two\n--------\n\nbody text\n"
        assert chunks_of(text) == [("Title", "intro text"), ("Title › Part two", "body text")]

    def test_hashes_in_fenced_code_are_not_headings(self) -> None:
        text = ("# Real\n\n```sh\n# a shell comment\n```\n\n~~~~\n~~~\n# still code\n~~~~\n"
                "\n    # indented code\n")
        assert {h for h, _ in chunks_of(text)} == {"Real"}
        # Markdown openkb wrote itself is chunked without a parser: same answer.
        assert {c.heading for c in chunk_markdown(text, 1500)} == {"Real"}

    def test_a_longer_fence_is_not_closed_by_a_shorter_one(self) -> None:
        text = "````\n```\n# inside the outer fence\n```\n````\n\n# After\n\ntext\n"
        assert [c.heading for c in chunk_markdown(text, 1500)] == ["", "After"]

    def test_escaped_markup_in_headings_reads_as_text(self) -> None:
        chunks = chunk_markdown("## 1\\. C\\# and \\<b>\n\nbody\n", 1500)
        assert chunks[0].heading == "1. C# and <b>"

    def test_text_files_have_no_sections(self) -> None:
        converted = convert_text("Notes\n\n# hash line\n\nSetext?\n---\n\nend\n")
        assert {c.heading for c in chunk_markdown(converted.markdown, 1500)} == {""}

    def test_every_chunk_fits_and_no_word_is_lost(self) -> None:
        rng = random.Random(7)
        words = [rng.choice(["alpha", "beta", "x" * 40, "y" * 3000, "gamma"])
                 for _ in range(3000)]
        body = ""
        for word in words:
            body += word + rng.choice([" ", " ", "\n", "\n\n"])
        text = "# Top\n\n" + body + "\n## Sub\n\n" + body
        for max_chars in (80, 300, 1500):
            chunks = chunk_markdown(text, max_chars)
            assert all(0 < len(c.text) <= max_chars for c in chunks)
            assert [c.ord for c in chunks] == list(range(len(chunks)))
            joined = "".join("".join(c.text.split()) for c in chunks if c.heading != "Top")
            assert joined == "".join(body.split())

    def test_paragraphs_are_packed_up_to_the_size(self) -> None:
        paragraphs = [f"paragraph {i} " + "word " * 20 for i in range(30)]
        chunks = chunk_markdown("\n\n".join(paragraphs), 500)
        assert all(len(c.text) <= 500 for c in chunks)
        assert len(chunks) < len(paragraphs) / 3  # packed, not one per paragraph
        assert all(c.text.startswith("paragraph") for c in chunks)  # cut between them

    def test_chunking_is_deterministic(self) -> None:
        text = "# A\n\n" + "some text here. " * 500 + "\n\n## B\n\nmore\n"
        assert chunk_markdown(text, 300) == chunk_markdown(text, 300)

    def test_a_huge_single_line_is_linear(self) -> None:
        start = time.perf_counter()
        chunks = chunk_markdown("x" * 5_000_000, 1500)
        assert len(chunks) == 3334 and time.perf_counter() - start < 5

    def test_very_long_heading_paths_are_bounded(self) -> None:
        text = "".join(f"{'#' * (1 + i % 6)} {'h' * 1000}\n\ntext\n\n" for i in range(60))
        for chunk in chunk_markdown(text, 1500):
            assert all(len(part) <= 200 for part in chunk.heading.split(PATH_SEPARATOR))


class TestKeyTerms:
    def test_repeated_phrases_come_first_and_stopwords_never_count(self) -> None:
        text = ("# Attention heads\n\nThe attention heads attend. Attention heads again, "
                "and the model uses attention heads. However the data is there, however.\n")
        terms = key_terms(text, "Attention heads", 5)
        assert terms[0] == "attention heads"
        assert not {"however", "the", "data", "there"} & set(terms)

    def test_documents_on_one_theme_share_their_phrase(self) -> None:
        first = ("# Pruning\n\nPruning removes attention heads. Most attention heads in a "
                 "transformer can go; attention heads that remain do the work.\n")
        second = ("Induction heads\n\nInduction heads are attention heads that copy. "
                  "Finding attention heads like these needs a trained model.\n")
        shared = set(key_terms(first, "Pruning", 10)) & set(
            key_terms(convert_text(second).markdown, "Induction heads", 10))
        assert "attention heads" in shared

    def test_hyphenated_words_are_one_term(self) -> None:
        text = "Self-attention is everywhere. Self-attention costs memory. Multi-head " \
               "attention splits self-attention.\n"
        terms = key_terms(text, "x", 10)
        assert "self-attention" in terms and "self" not in terms
        assert clean_terms(["Self-attention"]) == ["self attention"]

    def test_a_word_that_only_appears_inside_its_phrase_is_not_a_term(self) -> None:
        text = "Gradient descent works. Gradient descent converges. Gradient descent wins.\n"
        assert key_terms(text, "x", 10) == ["gradient descent"]

    def test_code_urls_and_link_targets_are_ignored(self) -> None:
        text = ("Prose about kernels and kernels.\n\n```\nvariable_name variable_name\n"
                "foobar foobar foobar\n```\n\nSee https://example.com/foobar/foobar and "
                "[the docs](http://x/foobar-foobar).\n")
        terms = key_terms(text, "x", 10)
        assert "kernels" in terms
        assert not any("foobar" in t or "variable" in t for t in terms)

    def test_a_term_seen_once_counts_only_in_a_heading_or_title(self) -> None:
        text = "# Entropy\n\nOnce we mention thermodynamics here.\n"
        terms = key_terms(text, "Heat", 10)
        assert "entropy" in terms and "thermodynamics" not in terms

    def test_deterministic_and_bounded(self) -> None:
        rng = random.Random(3)
        vocabulary = ["tensor", "gradient", "kernel", "matrix", "vector", "layer", "weight"]
        text = " ".join(rng.choice(vocabulary) for _ in range(5000))
        assert key_terms(text, "x", 4) == key_terms(text, "x", 4)
        assert len(key_terms(text, "x", 4)) == 4

    def test_a_50_mb_document_is_analysed_quickly(self) -> None:
        start = time.perf_counter()
        key_terms(("word another " * 10 + "\n") * 400_000, "x", 10)
        assert time.perf_counter() - start < 5


class TestLeadParagraph:
    def test_skips_headings_lists_code_and_quotes(self) -> None:
        text = ("# Title\n\n- a list item here\n\n```\ncode block here\n\nstill code\n```\n\n"
                "> a quote of some words\n\n    indented code words here\n\n"
                "The *real* [lead](http://x) paragraph starts here.\n")
        assert lead_paragraph(text) == "The real lead paragraph starts here."

    def test_skips_front_matter_and_setext_headings(self) -> None:
        text = ("---\ntitle: x\n---\nA setext title here\n===================\n\n"
                "The first real paragraph of prose.\n")
        assert lead_paragraph(text) == "The first real paragraph of prose."

    def test_a_long_lead_is_cut_at_a_word(self) -> None:
        lead = lead_paragraph("word " * 400, limit=100)
        assert lead.endswith("…") and len(lead) <= 101
        assert re.fullmatch(r"(word )*word…", lead)

    def test_no_prose_no_lead(self) -> None:
        assert lead_paragraph("# Only\n\n- a list\n- of items\n") == ""

    def test_a_text_file_line_that_looks_like_a_heading_can_be_the_lead(self) -> None:
        converted = convert_text("# This line looks like a heading but is text.\n")
        assert lead_paragraph(converted.markdown) == \
            "# This line looks like a heading but is text."
