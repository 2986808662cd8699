"""The ``llm:`` section of config.yaml, and the endpoint it resolves to.

``base_url`` falls back to ``OPENAI_BASE_URL`` and the key is read from the
environment variable ``api_key_env`` names (``OPENAI_API_KEY`` by default),
as the official openai client does; a local server (Ollama, llama.cpp,
vLLM, LM Studio) needs a base_url and no key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

from openkb.errors import ConfigError, UsageError

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Sent as the key to servers that want none: the client refuses an empty one.
NO_KEY = "no-key"


@dataclass(frozen=True)
class LlmSettings:
    base_url: str | None = None
    model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4
    timeout_s: float = 120.0
    max_retries: int = 4
    # Characters of the document sent at most (see openkb.llm.prompt).
    input_chars: int = 12000
    max_output_tokens: int = 512


_INT = {"concurrency": 1, "max_retries": 0, "input_chars": 200, "max_output_tokens": 16}
_STR = {"base_url", "model", "api_key_env"}


def parse_llm_settings(value: object, source: str) -> LlmSettings:
    """The ``llm:`` mapping of config.yaml (None: the defaults)."""
    if value is None:
        return LlmSettings()
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: llm must be a mapping of settings",
                          hint="for example  llm: {base_url: http://localhost:11434/v1, "
                               "model: llama3.2}")
    known = {f.name for f in fields(LlmSettings)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown llm setting(s) {', '.join(map(str, unknown))}",
                          hint=f"known llm settings: {', '.join(sorted(known))}")
    for key, item in value.items():
        if key in _INT:
            ok = isinstance(item, int) and not isinstance(item, bool) and item >= _INT[key]
        elif key == "timeout_s":
            ok = isinstance(item, (int, float)) and not isinstance(item, bool) and item > 0
        else:
            ok = item is None or (isinstance(item, str) and item.strip() != "")
        if not ok:
            raise ConfigError(f"{source}: invalid value {item!r} for llm.{key}")
    return LlmSettings(**value)


@dataclass(frozen=True)
class Endpoint:
    """Where the calls go, resolved from settings and environment."""

    base_url: str
    model: str
    api_key: str
    key_source: str  # the environment variable the key came from, for messages
    settings: LlmSettings


def resolve_endpoint(settings: LlmSettings, model: str | None = None,
                     environ: dict[str, str] | None = None) -> Endpoint:
    """The endpoint to call, or a UsageError naming what to set."""
    env = os.environ if environ is None else environ
    if model:
        settings = replace(settings, model=model)
    base_url = settings.base_url or env.get("OPENAI_BASE_URL") or None
    api_key = env.get(settings.api_key_env) or None
    if base_url is None and api_key is None:
        raise UsageError(
            "LLM summaries were asked for, but no endpoint is configured",
            hint="set llm.base_url in .openkb/config.yaml (or OPENAI_BASE_URL), e.g. "
                 "http://localhost:11434/v1 for Ollama; for OpenAI itself set "
                 f"{settings.api_key_env}", argument="llm")
    if not settings.model:
        raise UsageError(
            "LLM summaries were asked for, but no model is named",
            hint="set llm.model in .openkb/config.yaml, or name a model (llm_model)",
            argument="llm_model")
    return Endpoint(base_url=(base_url or OPENAI_DEFAULT_BASE_URL).rstrip("/"),
                    model=settings.model, api_key=api_key or NO_KEY,
                    key_source=settings.api_key_env, settings=settings)
