"""openkb: a journaled, crash-safe ingest tool for a file knowledge base."""

__version__ = "0.1.0"
