"""The command line as a user meets it: help, exit codes, JSON shapes, output,
and the README that documents it."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.core
import typer.main
import yaml
from conftest import ROOT, markdown_doc, write_tree

from openkb import api
from openkb.cli.app import app
from openkb.config import Config
from openkb.progress import Progress


def _commands() -> dict[str, typer.core.TyperCommand | typer.core.TyperGroup]:
    """Every command and group by its path ("openkb", "openkb add",
    "openkb progress summarize", ...)."""
    found = {}

    def walk(command, path: str) -> None:  # type: ignore[no-untyped-def]
        found[path] = command
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "openkb")
    return found


COMMANDS = _commands()
LEAVES = [path for path, command in COMMANDS.items()
          if not isinstance(command, typer.core.TyperGroup)]


def _readme_table() -> dict[str, str]:
    """README's command table: the command words of each row -> its usage."""
    rows = {}
    for usage in re.findall(r"^\| `(openkb [^`]*)` \|", (ROOT / "README.md").read_text(),
                            re.MULTILINE):
        words = [w for w in usage.split() if re.fullmatch(r"[a-z][a-z-]*", w)]
        rows[" ".join(words)] = usage
    return rows


@pytest.mark.parametrize("path", COMMANDS)
def test_every_command_has_help(cli, path: str) -> None:
    command = COMMANDS[path]
    assert (command.help or "").strip(), f"{path} has no help text"
    for param in command.params:
        assert (getattr(param, "help", None) or "").strip(), (
            f"{path}: {param.opts[0]} has no help text")
    # And the user is shown it.
    result = cli(*path.split()[1:], "--help")
    assert result.code == 0, result.err
    shown = " ".join(result.out.replace("│", " ").split())
    assert " ".join(command.help.strip().splitlines()[0].split()) in shown, shown
    for param in command.params:
        if isinstance(param, typer.core.TyperOption):
            assert param.opts[0] in shown, (path, param.opts[0])


@pytest.mark.parametrize("path", LEAVES)
def test_every_command_is_in_the_readme_table(path: str) -> None:
    table = _readme_table()
    assert path in table, f"`{path}` is not in README.md's command table"
    for param in COMMANDS[path].params:
        if isinstance(param, typer.core.TyperOption):
            assert param.opts[0] in table[path], (
                f"README.md's row for `{path}` does not mention {param.opts[0]}")


def test_the_readme_table_names_no_command_that_does_not_exist() -> None:
    assert set(_readme_table()) <= set(LEAVES)


def test_readme_starts_with_demo_and_test_and_ci_runs_the_tests() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```sh\n(.*?)```", readme, re.DOTALL).group(1)
    assert [line.split("#")[0].strip() for line in first_block.strip().splitlines()] == [
        "make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "examples" in (ROOT / "Makefile").read_text()


def test_config_example_comments_every_key() -> None:
    text = (ROOT / "config.yaml.example").read_text()
    paragraphs = text.split("\n\n")
    for key in Config.__dataclass_fields__:
        home = [p for p in paragraphs if re.search(rf"^{key}:", p, re.MULTILINE)]
        assert len(home) == 1 and home[0].lstrip().startswith("#"), f"{key} is not explained"
    assert yaml.safe_load(text) is not None


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "docs", {
        "one.md": markdown_doc("One", "apples", "pears"),
        "two.md": markdown_doc("Two", "apples", "plums"),
        "bad.pdf": b"<html>not a pdf</html>",
    })


def test_add_reports_failures_and_exits_1(cli, kb: Path, docs: Path) -> None:
    result = cli("--kb", str(kb), "add", str(docs))
    assert result.code == 1
    assert "added 2" in result.out and "failed 1" in result.out
    assert "bad.pdf: named .pdf but is not a PDF (looks like HTML)" in result.out
    # Where the time went, without --debug: the busiest phases on one line.
    time_line = next(line for line in result.out.splitlines() if line.strip().startswith("time:"))
    assert "prepare" in time_line and "busy, summed over workers" in time_line


def test_usage_errors_exit_2(cli, kb: Path, tmp_path: Path) -> None:
    assert cli("--kb", str(kb), "add", "--jobs", "0", str(tmp_path)).code == 2
    missing = cli("--kb", str(tmp_path / "nowhere"), "list")
    assert missing.code == 2
    assert "is not an openkb knowledge base" in missing.err and "openkb init" in missing.err
    assert cli("--kb", str(kb), "search", "!!! ???").code == 2
    unknown = cli("--kb", str(kb), "remove", "no-such-doc")
    assert unknown.code == 2 and "nothing was removed" in unknown.err


def test_the_kb_is_found_from_env_and_from_a_subdirectory(cli, kb: Path, docs: Path) -> None:
    assert cli("add", str(docs), env={"OPENKB_DIR": str(kb)}).code == 1
    listing = cli("list", "--json", cwd=kb / "wiki" / "concepts")
    assert listing.code == 0
    assert {d["name"] for d in json.loads(listing.out)} == {"one", "two"}


def test_json_outputs(cli, kb: Path, docs: Path) -> None:
    added = json.loads(cli("--kb", str(kb), "add", "--json", str(docs)).out)
    assert {a["name"] for a in added["added"]} == {"one", "two"}
    assert added["failed"][0]["file"].endswith("bad.pdf") and added["exit_code"] == 1
    listed = json.loads(cli("--kb", str(kb), "list", "--json").out)
    assert {"name", "title", "kind", "bytes", "sha256", "terms"} <= set(listed[0])
    hits = json.loads(cli("--kb", str(kb), "search", "--json", "apples").out)
    assert {h["doc"] for h in hits} == {"one", "two"}
    assert "**apples**" in hits[0]["highlighted"].lower()
    status = json.loads(cli("--kb", str(kb), "status", "--json").out)
    assert status["documents"] == 2 and status["pending_journals"] == 0
    shown = json.loads(cli("--kb", str(kb), "show", "--json", "one").out)
    assert shown["summary"].startswith("# One")
    verified = json.loads(cli("--kb", str(kb), "verify", "--json").out)
    assert verified["problems"] == [] and verified["documents"] == 2
    recovered = json.loads(cli("--kb", str(kb), "recover", "--json").out)
    assert recovered == {"rolled_back": [], "rolled_forward": [], "discarded": [], "swept": []}
    removed = json.loads(cli("--kb", str(kb), "remove", "--json", "--dry-run", "one").out)
    assert removed["removed"] == ["one"] and removed["dry_run"] is True


def test_quiet_prints_nothing_on_success(cli, kb: Path, tmp_path: Path) -> None:
    docs = write_tree(tmp_path / "ok", {"a.md": markdown_doc("A", "apples")})
    result = cli("--kb", str(kb), "--quiet", "add", str(docs))
    assert result.code == 0 and result.out == "" and result.err == ""


def test_names_with_control_characters_are_printed_escaped(cli, kb: Path,
                                                           tmp_path: Path) -> None:
    docs = write_tree(tmp_path / "odd", {"evil\nname\x1b[31m.pdf": b"not a pdf"})
    result = cli("--kb", str(kb), "add", str(docs))
    failure_lines = [line for line in result.out.splitlines() if "not a PDF" in line]
    assert len(failure_lines) == 1
    assert "evil\\nname\\x1b[31m.pdf" in failure_lines[0]


def test_errors_say_what_to_do_next(cli, kb: Path) -> None:
    result = cli("--kb", str(kb), "show", "nothing-here")
    assert result.code == 2
    assert result.err.startswith("error: ") and "hint: " in result.err


def test_init_is_idempotent(cli, tmp_path: Path) -> None:
    assert cli("init", str(tmp_path / "k")).out.startswith("created")
    again = cli("init", str(tmp_path / "k"))
    assert again.code == 0 and "already a knowledge base" in again.out


def test_init_creates_the_kb_that_kb_names(cli, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`openkb --kb X init` makes X, not a KB in the current directory (which
    it did, quietly: a KB in the middle of someone's source tree)."""
    monkeypatch.chdir(tmp_path)
    result = cli("--kb", str(tmp_path / "named"), "init")
    assert result.code == 0 and (tmp_path / "named" / ".openkb").is_dir()
    assert not (tmp_path / ".openkb").exists()
    both = cli("--kb", str(tmp_path / "a"), "init", str(tmp_path / "b"))
    assert both.code == 2 and "two places" in both.err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_remove_keep_raw_and_dry_run_from_the_cli(cli, kb: Path, docs: Path) -> None:
    cli("--kb", str(kb), "add", str(docs))
    assert "would remove one" in cli("--kb", str(kb), "remove", "--dry-run", "one").out
    assert (kb / "raw" / "one.md").exists()
    out = cli("--kb", str(kb), "remove", "--keep-raw", "one").out
    assert "removed one" in out and "attic" in out
    assert (kb / "attic" / "one.md").exists()


def test_in_process_runs_do_not_share_log_handlers(cli, kb: Path, tmp_path: Path) -> None:
    """The `cli` fixture's promise: a run's log handler (bound to that run's
    captured stderr) does not swallow the next run's --debug lines."""
    handlers = list(logging.getLogger("openkb").handlers)
    assert cli("--kb", str(kb), "list").code == 0
    docs = write_tree(tmp_path / "d", {"a.md": markdown_doc("A", "apples")})
    debug = cli("--kb", str(kb), "--debug", "add", str(docs))
    assert debug.code == 0 and "openkb.timing" in debug.err, debug.err
    assert logging.getLogger("openkb").handlers == handlers


def test_a_reader_that_stops_reading_ends_the_output_quietly(kb: Path, tmp_path: Path) -> None:
    """`openkb list --json | head`: no "Broken pipe" error, the command's own
    exit code (as git and ripgrep)."""
    docs = write_tree(tmp_path / "docs", {f"note-{i}.md": f"# Note {i}\n\nwords {i}\n"
                                          for i in range(400)})
    (kb / ".openkb" / "config.yaml").write_text("commit_group_size: 400\n")
    assert not api.add(str(kb), [str(docs)], Progress(), jobs=1).failed
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENKB_")}
    proc = subprocess.Popen([sys.executable, "-m", "openkb", "--kb", str(kb), "list", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=kb,
                            env={**env, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None and proc.stdout.read(100).startswith(b"[")
    proc.stdout.close()  # the reader leaves, 100 bytes into ~100 KB of JSON
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert err == b""


def test_an_error_naming_a_path_with_brackets_prints_it_whole(cli, tmp_path: Path) -> None:
    """Error text is not markup: `[ack]` in a path is not a style."""
    odd = tmp_path / "br[ack]et" / "kb"
    result = cli("--kb", str(odd), "list")
    assert result.code == 2
    assert f"{odd} is not an openkb knowledge base" in result.err
