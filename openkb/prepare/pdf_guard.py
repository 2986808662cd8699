"""A decompression-bomb check for PDFs, before PDFium reads them.

pypdf stops inflating a stream past a safety limit; PDFium does not: a
1.5 MB PDF whose content stream inflates to 1 GiB took PDFium 15 s and
2.1 GB of memory to read (and, under a worker's memory limit, the worker
died of SIGABRT). So, before PDFium sees a file, every Flate stream that is
not an image (content streams, form XObjects, object streams) is inflated
here, in C, with a cap, and nothing is kept: a stream that would grow past
:data:`MAX_INFLATED_BYTES` fails the file with the reason pypdf gives.
Images are skipped: text extraction never decodes them.

The streams are found in the raw bytes (``stream`` ... ``endstream``), not
through a parser, so a damaged cross-reference table does not hide one.
"""

from __future__ import annotations

import re
import zlib

from openkb.errors import FileRejected

# The same limit pypdf applies to one inflated stream (ZLIB_MAX_OUTPUT_LENGTH).
MAX_INFLATED_BYTES = 75_000_000
_CHUNK = 1 << 20

_STREAM = re.compile(rb"stream\r?\n")


def check_inflation(data: bytes, limit: int = MAX_INFLATED_BYTES) -> None:
    """Raise FileRejected if a non-image Flate stream inflates past ``limit``."""
    position = 0
    while True:
        match = _STREAM.search(data, position)
        if match is None:
            return
        start = match.end()
        end = data.find(b"endstream", start)
        if end < 0:
            end = len(data)
        header = _stream_dict(data, match.start())
        if b"/FlateDecode" in header and b"/Image" not in header:
            _inflate_within(data, start, end, limit)
        position = end


def _stream_dict(data: bytes, stream_at: int) -> bytes:
    """The object header and dictionary before a ``stream`` keyword, from
    its ``obj`` keyword on (bounded look-back)."""
    floor = max(0, stream_at - 4096)
    begins = data.rfind(b"obj", floor, stream_at)
    return data[begins if begins >= 0 else floor:stream_at]


def _inflate_within(data: bytes, start: int, end: int, limit: int) -> None:
    inflater = zlib.decompressobj()
    produced = 0
    view = memoryview(data)[start:end]
    try:
        for offset in range(0, len(view), _CHUNK):
            chunk = view[offset:offset + _CHUNK]
            while chunk:
                out = inflater.decompress(chunk, _CHUNK)
                produced += len(out)
                if produced > limit:
                    raise FileRejected(
                        f"a stream decompresses past the safety limit of {limit // 1_000_000} "
                        "MB (a decompression bomb?)")
                chunk = inflater.unconsumed_tail
                if inflater.eof:
                    return
    except zlib.error:
        return  # damaged data is PDFium's to judge, not a bomb
