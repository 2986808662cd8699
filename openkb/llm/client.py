"""One summary call to an OpenAI-compatible chat endpoint, with retries.

The retries are ours (the openai client's are turned off) so that each one
is counted and the policy is the same whatever the client version:

- 429: wait what ``Retry-After`` says (seconds or an HTTP date), else back
  off as for a 5xx;
- 5xx, timeouts, dropped connections, a body that is not a chat reply:
  exponential backoff with full jitter, so many threads that failed together
  do not retry together;
- 401 / 403 (the key), 404 (the model or the URL): every later call would
  fail the same way, so the client stops: this call and every later one
  raise :class:`LlmStopped` with the one message, at once;
- anything else (a 400: the request itself): that document fails, others go on.

After ``max_retries`` retries the call fails with :class:`LlmCallFailed`;
the caller keeps the extractive summary and marks the document pending.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from openkb.llm.settings import Endpoint

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
RETRY_AFTER_CAP_S = 300.0
CANCEL_POLL_S = 0.1


class LlmCallFailed(Exception):
    """One call failed for good; ``reason`` is what the registry records."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LlmStopped(LlmCallFailed):
    """The endpoint refused the key (or has no such model): no call can succeed."""


@dataclass
class Reply:
    text: str
    tokens_in: int = 0
    tokens_out: int = 0


@dataclass
class LlmStats:
    """Counters the progress events carry; updated from the calling threads."""

    calls: int = 0  # answered
    failed: int = 0
    in_flight: int = 0
    retries: int = 0
    rate_limited: int = 0  # 429s
    tokens_in: int = 0
    tokens_out: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: int) -> None:
        with self.lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def as_dict(self) -> dict[str, int]:
        with self.lock:
            return {"calls": self.calls, "failed": self.failed, "in_flight": self.in_flight,
                    "retries": self.retries, "rate_limited": self.rate_limited,
                    "tokens_in": self.tokens_in, "tokens_out": self.tokens_out}


def retry_after_s(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_s(attempt: int) -> float:
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** attempt))


class LlmClient:
    def __init__(self, endpoint: Endpoint, stats: LlmStats | None = None,
                 cancel: threading.Event | None = None) -> None:
        import openai  # imported on first use: commands without --llm never load it

        self._openai = openai
        self.endpoint = endpoint
        self.stats = stats or LlmStats()
        self.cancel = cancel or threading.Event()
        self._client = openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key,
                                     timeout=endpoint.settings.timeout_s, max_retries=0)
        self._stop_lock = threading.Lock()
        self.stopped: str | None = None  # the one message, once the endpoint refused us

    def close(self) -> None:
        self._client.close()

    def summarize(self, messages: list[dict[str, str]]) -> Reply:
        settings = self.endpoint.settings
        attempt = 0
        while True:
            if self.stopped is not None:
                raise LlmStopped(self.stopped)
            if self.cancel.is_set():
                raise LlmCallFailed("interrupted")
            self.stats.add(in_flight=1)
            try:
                return self._call_until_cancelled(messages)
            except _Retryable as exc:
                if attempt >= settings.max_retries:
                    self.stats.add(failed=1)
                    raise LlmCallFailed(f"{exc.reason} (after {attempt} retries)") from None
                retry = exc
            except LlmCallFailed:
                self.stats.add(failed=1)
                raise
            finally:
                self.stats.add(in_flight=-1)
            # Waiting to retry is not a call in flight.
            attempt += 1
            self.stats.add(retries=1)
            self.cancel.wait(retry.wait_s if retry.wait_s is not None else backoff_s(attempt))

    def _call_until_cancelled(self, messages: list[dict[str, str]]) -> Reply:
        """The call, on a daemon thread of its own, abandoned on cancel.

        A blocked read cannot be interrupted (closing the client does not
        wake it), and the executor's threads are joined when the interpreter
        exits: after Ctrl-C, the process would wait up to ``timeout_s`` for
        calls whose replies nobody will use. A daemon thread is not joined.
        """
        box: dict[str, Any] = {}
        done = threading.Event()

        def call() -> None:
            try:
                box["reply"] = self._call(messages)
            except BaseException as exc:  # handed to the waiting thread
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=call, name="openkb-llm-call", daemon=True).start()
        while not done.wait(CANCEL_POLL_S):
            if self.cancel.is_set():
                raise LlmCallFailed("interrupted")
        if "error" in box:
            raise box["error"]
        return box["reply"]

    def _call(self, messages: list[dict[str, str]]) -> Reply:
        openai = self._openai
        try:
            response = self._client.chat.completions.create(
                model=self.endpoint.model, messages=messages,  # type: ignore[arg-type]
                max_tokens=self.endpoint.settings.max_output_tokens)
        except openai.RateLimitError as exc:
            self.stats.add(rate_limited=1)
            wait = retry_after_s(exc.response.headers.get("retry-after"))
            raise _Retryable("rate limited (429)",
                             None if wait is None else min(wait, RETRY_AFTER_CAP_S)) from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise self._stop(f"the endpoint {self.endpoint.base_url} refused the API key "
                             f"({exc.status_code}); check {self.endpoint.key_source}") from None
        except openai.NotFoundError:
            raise self._stop(f"the endpoint {self.endpoint.base_url} has no model "
                             f"{self.endpoint.model!r} (404); check llm.model and "
                             "llm.base_url") from None
        except openai.APITimeoutError:
            raise _Retryable("timed out") from None
        except openai.APIConnectionError as exc:
            raise _Retryable(f"connection failed ({exc.__cause__ or exc})") from None
        except openai.APIStatusError as exc:
            if exc.status_code >= 500 or exc.status_code == 408:
                raise _Retryable(f"server error ({exc.status_code})") from None
            raise LlmCallFailed(f"request refused ({exc.status_code}): "
                                f"{_short(str(exc.message))}") from None
        except (openai.APIError, ValueError) as exc:  # a 200 whose body is not JSON, ...
            raise _Retryable(f"unreadable reply ({_short(str(exc))})") from None
        text = _reply_text(response)
        if text is None:
            raise _Retryable("reply without text")
        usage = getattr(response, "usage", None)
        tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0)
        tokens_out = int(getattr(usage, "completion_tokens", 0) or 0)
        self.stats.add(calls=1, tokens_in=tokens_in, tokens_out=tokens_out)
        return Reply(text, tokens_in, tokens_out)

    def _stop(self, message: str) -> LlmStopped:
        with self._stop_lock:
            if self.stopped is None:
                self.stopped = message
        return LlmStopped(self.stopped)


class _Retryable(Exception):
    def __init__(self, reason: str, wait_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait_s = wait_s


def _reply_text(response: object) -> str | None:
    try:
        content = response.choices[0].message.content  # type: ignore[attr-defined]
    except (AttributeError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) and content.strip() else None


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"
