"""Shared fixtures: a fresh KB, a tree of input documents, and ways to run openkb."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openkb import api, crashpoints, fsio
from openkb.cli.app import app
from openkb.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
sys.path.insert(0, str(Path(__file__).parent))


def corpus_dir(name: str) -> Path:
    path = CORPUS / name
    if not path.is_dir():
        pytest.skip(f"shared corpus {path} is absent (it lives beside the project, at "
                    "../shared/corpus)")
    return path


@pytest.fixture(autouse=True)
def _clean_injection_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process tests must not inherit crash or fault settings."""
    for var in ("OPENKB_CRASH_AT", "OPENKB_FAULT", "OPENKB_POWERLOSS", "OPENKB_DIR",
                "OPENKB_PROGRESS_JSONL", "OPENKB_LOG"):
        monkeypatch.delenv(var, raising=False)
    crashpoints.reset()
    fsio.configure_from_env()


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
    return root


def markdown_doc(title: str, *topics: str, extra: str = "") -> str:
    """A small Markdown document whose key terms include ``topics``."""
    body = [f"# {title}", "", f"This note is about {' and '.join(topics)}.", ""]
    for topic in topics:
        body += [f"## {topic.title()}", "",
                 f"The {topic} matters. We study {topic} closely; {topic} again and "
                 f"{topic} once more, because {topic} is the point.", ""]
    if extra:
        body += [extra, ""]
    return "\n".join(body)


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    api.init(str(root))
    return root


@pytest.fixture
def sample_docs(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "docs", {
        "alpha.md": markdown_doc("Alpha", "attention heads", "transformer layers"),
        "beta.md": markdown_doc("Beta", "attention heads", "gradient descent"),
        "gamma.txt": "Gamma notes\n\nPlain text about gradient descent and gradient descent "
                     "schedules, with transformer layers mentioned twice: transformer layers.\n",
        "sub/delta.html": "<html><head><title>Delta page</title></head><body><h1>Delta</h1>"
                          "<p>Delta covers transformer layers and attention heads in HTML."
                          "</p><p>More on attention heads.</p></body></html>",
    })


@dataclass
class Run:
    code: int
    out: str
    err: str


# Environment an in-process run must not be given.
NOT_IN_PROCESS = {"OPENKB_CRASH_AT": "a crash point SIGKILLs the process it is reached in"}


def openkb_in_process(*args: str, env: dict[str, str] | None = None,
                      cwd: Path | None = None) -> Run:
    """Run the CLI in this process (typer's runner): no interpreter start-up.

    Each run leaves the process as it found it: the environment (and the
    fault and power-loss plans read from it), the working directory, and
    the "openkb" logger, to which `configure_logging` attaches a handler on
    the run's own captured stderr and sets a level that would otherwise
    carry over into the next run. Output of prepare workers (other
    processes) is not in the captured stderr."""
    for name, why in NOT_IN_PROCESS.items():
        if name in (env or {}):
            raise AssertionError(f"{name}: {why}; use run_openkb")
    logger = logging.getLogger("openkb")
    handlers, level, here = list(logger.handlers), logger.level, os.getcwd()
    saved_env = dict(os.environ)
    try:
        os.environ.update(env or {})
        fsio.configure_from_env()
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(saved_env)
        fsio.configure_from_env()
        for handler in logger.handlers:
            if handler not in handlers:
                logger.removeHandler(handler)
        logger.setLevel(level)
    return Run(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def cli() -> Callable[..., Run]:
    """The CLI in-process; see :func:`openkb_in_process`."""
    return openkb_in_process


def run_openkb(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run openkb as a real process (for crashes, signals, locks)."""
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith("OPENKB_")}
    full_env.update(env or {})
    full_env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "openkb", *args], env=full_env, text=True,
                          capture_output=True, timeout=timeout, cwd=cwd)


def tree_hash(kb_root: Path) -> str:
    return api.tree_hash(str(kb_root), Progress())


def verify_ok(kb_root: Path) -> None:
    report = api.verify(str(kb_root), Progress())
    assert report.ok, [f"{p.code} {p.path}: {p.message}" for p in report.problems]
