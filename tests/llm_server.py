"""A real HTTP server on loopback that speaks the OpenAI chat-completions API.

Started and stopped by the test that uses it (``with ChatServer() as server``).
It answers every prompt with a summary naming the document's title, and can
be told to misbehave: answer late, send scripted failures first (429 with
Retry-After, 500, a body that is not JSON), fail some titles for good, or
refuse the key (401). It counts what it was asked, per prompt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ChatServer:
    def __init__(self, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.script: list[tuple[int, dict[str, str], bytes | None]] = []  # served first, in order
        self.fail_titles: set[str] = set()  # always 500 for these
        self.slow_first = 0  # this many requests answer only after slow_s (timeouts)
        self.slow_s = 0.0
        self.status_always: int | None = None  # e.g. 401
        # After this many replies, requests wait until ``release`` is set, then
        # get a 503 (to kill a client mid-run with calls in flight).
        self.hold_after: int | None = None
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.requests = 0
        self.answered: Counter[str] = Counter()  # prompt hash -> replies sent
        self.asked_at: list[float] = []
        self.in_flight = self.max_in_flight = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def config_yaml(self, **extra: object) -> str:
        llm = {"base_url": self.base_url, "model": "test-model", "timeout_s": 10,
               "max_retries": 3, **extra}
        return "llm:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in llm.items())

    def _respond(self, body: dict) -> tuple[int, dict[str, str], bytes]:
        user = body["messages"][-1]["content"]
        title = user.splitlines()[0].removeprefix("Title: ")
        prompt = hashlib.sha256(user.encode()).hexdigest()
        with self.lock:
            self.requests += 1
            self.asked_at.append(time.monotonic())
            scripted = self.script.pop(0) if self.script else None
            slow = self.requests <= self.slow_first
        if self.status_always is not None:
            return self.status_always, {}, _error(self.status_always)
        if scripted is not None:
            status, headers, raw = scripted
            return status, headers, raw if raw is not None else _error(status)
        if title in self.fail_titles:
            return 500, {}, _error(500)
        if slow:
            time.sleep(self.slow_s)
            return 200, {}, b"{}"  # too late: the client has given up
        if self.latency_s:
            time.sleep(self.latency_s)
        with self.lock:
            held = self.hold_after is not None and sum(self.answered.values()) >= self.hold_after
            if not held:
                self.answered[prompt] += 1
        if held:
            self.release.wait()
            return 503, {}, _error(503)
        reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop", "message": {
                     "role": "assistant",
                     "content": f"LLM summary of {title}: it explains what {title} covers."}}],
                 "usage": {"prompt_tokens": len(user) // 4, "completion_tokens": 12,
                           "total_tokens": len(user) // 4 + 12}}
        return 200, {}, json.dumps(reply).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with server.lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, headers, raw = server._respond(body)
                finally:
                    with server.lock:
                        server.in_flight -= 1
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                with contextlib.suppress(OSError):  # the client died (a SIGKILL test)
                    self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


def _error(status: int) -> bytes:
    return json.dumps({"error": {"message": f"test server says {status}", "type": "test",
                                 "code": status}}).encode()
