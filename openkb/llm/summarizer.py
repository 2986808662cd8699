"""A document's LLM summary: from the cache if it is there, else one call
whose reply is made durable before it is handed back."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

from openkb.llm.cache import CacheEntry, ReplyCache, cache_key
from openkb.llm.client import LlmCallFailed, LlmClient, LlmStats
from openkb.llm.prompt import PROMPT_VERSION, build_messages, clean_reply
from openkb.llm.settings import Endpoint
from openkb.model import DocumentInfo


@dataclass
class Outcome:
    info: DocumentInfo  # with the LLM summary, or the pending reason
    cached: bool = False
    wait_ms: float = 0.0  # time spent on the endpoint (0 from the cache)
    failed: str = ""  # the reason, when the call failed


class Summarizer:
    """Thread-safe: the stage's threads share one."""

    def __init__(self, endpoint: Endpoint, cache: ReplyCache,
                 cancel: threading.Event | None = None) -> None:
        self.endpoint = endpoint
        self.cache = cache
        self.stats = LlmStats()
        self.cancel = cancel or threading.Event()
        self.cache_hits = 0
        self._client: LlmClient | None = None
        self._client_lock = threading.Lock()

    @property
    def stopped(self) -> str | None:
        """Why the endpoint refused every call (a bad key), if it did."""
        return self._client.stopped if self._client is not None else None

    def client(self) -> LlmClient:
        with self._client_lock:
            if self._client is None:
                self._client = LlmClient(self.endpoint, self.stats, self.cancel)
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def key(self, source_sha256: str) -> str:
        return cache_key(source_sha256, self.endpoint.model, PROMPT_VERSION,
                         self.endpoint.settings.input_chars)

    def summarize(self, info: DocumentInfo, source_text: str, source_sha256: str) -> Outcome:
        key = self.key(source_sha256)
        entry = self.cache.get(key)
        if entry is not None:
            with self._client_lock:
                self.cache_hits += 1
            return Outcome(replace(info, summary=entry.text, summary_pending=""), cached=True)
        messages = build_messages(info.title, source_text, info.outline,
                                  self.endpoint.settings.input_chars)
        started = time.monotonic()
        try:
            reply = self.client().summarize(messages)
            text = clean_reply(reply.text)
            if not text:
                raise LlmCallFailed("the reply held no summary")
        except LlmCallFailed as exc:
            wait = (time.monotonic() - started) * 1000
            return Outcome(replace(info, summary_pending=exc.reason), wait_ms=wait,
                           failed=exc.reason)
        # Durable before the document that uses it can commit: never paid twice.
        self.cache.put(CacheEntry(key, source_sha256, self.endpoint.model, PROMPT_VERSION,
                                  self.endpoint.settings.input_chars, text,
                                  reply.tokens_in, reply.tokens_out))
        return Outcome(replace(info, summary=text, summary_pending=""),
                       wait_ms=(time.monotonic() - started) * 1000)
