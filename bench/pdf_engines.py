"""PDFium against pypdf on the same PDFs: time, and how much text they agree on.

`python -m bench.pdf_engines DIR` prints one JSON object: per file, each
engine's CPU seconds and word count (or its rejection reason), and the word
overlap (|words in both| / |words in either|, as multisets, case-folded).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

from openkb.errors import FileRejected
from openkb.prepare.pdf_text import ENGINES, page_texts

_WORD = re.compile(r"\w+", re.UNICODE)


def _words(data: bytes, engine: str) -> tuple[Counter | str, float]:
    start = time.process_time()
    try:
        pages = page_texts(data, 0, engine=engine)
    except FileRejected as exc:
        return str(exc), time.process_time() - start
    text = " ".join(pages.texts.values())
    return Counter(w.casefold() for w in _WORD.findall(text)), time.process_time() - start


def compare(folder: Path) -> dict:
    files = {}
    for path in sorted(folder.rglob("*.pdf")):
        data = path.read_bytes()
        row: dict = {}
        words = {}
        for engine in ENGINES:
            found, seconds = _words(data, engine)
            row[f"{engine}_s"] = round(seconds, 4)
            row[engine] = found if isinstance(found, str) else sum(found.values())
            words[engine] = found
        a, b = words["pdfium"], words["pypdf"]
        if isinstance(a, Counter) and isinstance(b, Counter) and (a or b):
            row["overlap"] = round(sum((a & b).values()) / sum((a | b).values()), 3)
        files[str(path.relative_to(folder))] = row
    return files


if __name__ == "__main__":
    print(json.dumps(compare(Path(sys.argv[1]))))
