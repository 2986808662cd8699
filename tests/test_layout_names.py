"""Path containment and document names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from openkb.config import DEFAULT_CONFIG_TEXT, Config, load_config
from openkb.errors import ConfigError, UnsafePath
from openkb.layout import KBLayout
from openkb.names import MAX_NAME_BYTES, slugify, unique_name

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("rel", ["../x", "/etc/passwd", "raw/../../x", "", "raw//x", "./raw/x",
                                 "raw/x\x00"])
def test_resolve_refuses_paths_that_leave_the_kb(tmp_path: Path, rel: str) -> None:
    with pytest.raises(UnsafePath):
        KBLayout.at(tmp_path).resolve(rel)


def test_resolve_refuses_symlinked_parents_and_other_areas(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    kb = tmp_path / "kb"
    (kb / "wiki").mkdir(parents=True)
    os.symlink(outside, kb / "raw")
    layout = KBLayout.at(kb)
    with pytest.raises(UnsafePath):
        layout.resolve("raw/file.md")
    with pytest.raises(UnsafePath):
        layout.resolve(".openkb/kb.sqlite", areas=("raw", "wiki"))
    assert layout.resolve("wiki/x.md", areas=("wiki",)) == kb / "wiki" / "x.md"


@pytest.mark.parametrize(("stem", "expected"), [
    ("Attention Is All You Need", "attention-is-all-you-need"),
    ("notes\nwith\x07control", "notes-with-control"),
    ("CON", "con-doc"),
    ("index", "index-doc"),
    ("...", "document"),
    ("Caf\u0065\u0301", "café"),  # NFD in, NFC out: twins collide on purpose
    ("Café", "café"),
    ("a/b\\c", "a-b-c"),
])
def test_slugify(stem: str, expected: str) -> None:
    assert slugify(stem) == expected


def test_long_names_fit_in_a_file_name() -> None:
    name = slugify("ü" * 400)
    assert len(name.encode()) <= MAX_NAME_BYTES
    assert len(f".{name}-99.md.openkb-tmp-4194304-1000000".encode()) < 255


def test_unique_name_counts_up() -> None:
    taken = {"notes", "notes-2"}
    assert unique_name("notes", taken.__contains__) == "notes-3"
    assert unique_name("other", taken.__contains__) == "other"


def test_config_example_documents_the_defaults() -> None:
    example = yaml.safe_load((ROOT / "config.yaml.example").read_text())
    assert set(example) == set(Config.__dataclass_fields__)
    assert load_config(ROOT / "config.yaml.example") == Config()


@pytest.mark.parametrize("text", ["jobs: 4\n", "commit_group_size: 0\n", "follow_symlinks: 3\n",
                                  "- a list\n", "convert_timeout_s: [\n",
                                  "# a tab:\n\t\n"])
def test_bad_config_is_a_usage_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("text", [DEFAULT_CONFIG_TEXT, "", "\n  # indented\n  \n",
                                  "# jobs: 4\nconvert_timeout_s: 7\n", "  convert_timeout_s: 7\n"])
def test_config_reads_as_yaml_does_with_or_without_the_parser(tmp_path: Path,
                                                              text: str) -> None:
    """A config of comments only is read without YAML (start-up time); any
    other is parsed: both must mean what YAML says the text means."""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    meant = yaml.safe_load(text) or {}
    assert load_config(path) == Config(**meant)
