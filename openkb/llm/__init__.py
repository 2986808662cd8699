"""LLM-written summaries through any OpenAI-compatible chat endpoint.

Off unless asked for (``add --llm``, ``recompile --llm``): nothing leaves the
machine otherwise. The pieces, one file each:

- :mod:`.settings`: the ``llm:`` section of config.yaml and the endpoint it
  resolves to (``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` as the openai client
  reads them);
- :mod:`.prompt`: the versioned prompt and the input budget;
- :mod:`.client`: one call, with retries (429 honours ``Retry-After``; 5xx
  and timeouts back off with jitter); a rejected key stops every later call;
- :mod:`.cache`: replies, fsynced under ``.openkb/llm-cache/`` as they
  arrive, keyed by (content hash, model, prompt version), so a crash or a
  re-run never pays twice;
- :mod:`.stage`: the thread-pool stage between prepare and commit;
- :mod:`.refresh`: summaries for documents already committed (``recompile``
  with the LLM, and documents left pending by a failed call).

This module imports nothing heavy: the openai client loads on first use.
"""
