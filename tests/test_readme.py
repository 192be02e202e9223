"""The README stays true to the code: its recipe reference is the generated one, its YAML
examples validate, its CLI reference names real commands and every flag, its method
tables name every registered method, and its setup commands are the ones CI runs.

Fast: nothing here loads a model or trains.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import yaml

from tailorkit.cli import build_parser
from tailorkit.methods import METHODS
from tailorkit.recipe import Recipe, recipe_from_dict, reference_markdown

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
START, END = "<!-- recipe-reference:start -->", "<!-- recipe-reference:end -->"
SETUP_COMMANDS = ("bash scripts/quickstart.sh", "bash scripts/test.sh")


def section(title: str, text: str = README) -> str:
    """The body of the level-2 section `## title`, up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)


# -- (a) recipe reference -------------------------------------------------------------------

def test_recipe_reference_is_generated():
    assert README.count(START) == 1 and README.count(END) == 1, "recipe reference markers missing"
    block = README.split(START, 1)[1].split(END, 1)[0]
    assert block.strip("\n") == reference_markdown().strip("\n"), (
        "README's recipe reference is out of date. Regenerate it: replace the text between "
        f"{START} and {END} in README.md with the output of `.venv/bin/tailor recipe schema`"
    )


# -- (b) YAML examples ------------------------------------------------------------------------

YAML_BLOCKS = code_blocks(README, "yaml")
# A snippet without model/data (e.g. just `methods:`) is checked inside this minimal recipe.
BASE = {"model": {"name": "minilm-l6"}, "data": {"name": "bbc-news"}}


def test_readme_has_yaml_examples():
    assert len(YAML_BLOCKS) >= 5


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=[f"yaml{i}" for i in range(len(YAML_BLOCKS))])
def test_yaml_example_validates(block, tmp_path, monkeypatch):
    # Examples may name a run the reader trained first (a distillation teacher): a stand-in.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "quickstart" / "model").mkdir(parents=True)
    (tmp_path / "runs" / "quickstart" / "recipe.yaml").write_text("model: {name: minilm-l6}\n")
    raw = yaml.safe_load(block)
    assert isinstance(raw, dict), f"README YAML example is not a mapping:\n{block}"
    if "task" in raw or "model" in raw:
        recipe_from_dict(raw, source="README example")  # raises TailorError naming the field
        return
    unknown = set(raw) - set(Recipe.model_fields)
    assert not unknown, f"README YAML snippet has non-recipe keys {sorted(unknown)}:\n{block}"
    recipe_from_dict({**BASE, **raw}, source="README snippet")


# -- (c) CLI reference -------------------------------------------------------------------------

def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _leaf_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """{('recipe', 'validate'): parser, ('train',): parser, ...}"""
    subs = _subcommands(parser)
    if not subs:
        return {prefix: parser}
    out = {}
    for name, sub in subs.items():
        out.update(_leaf_commands(sub, prefix + (name,)))
    return out


PARSER = build_parser()
LEAVES = _leaf_commands(PARSER)
CLI = section("CLI reference")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s.startswith("--")} - {"--help"}


def _resolve(words: list[str]) -> tuple[str, ...]:
    """The longest run of `words` that names a command; fails on an unknown command."""
    parser, path = PARSER, ()
    for word in words:
        subs = _subcommands(parser)
        if not subs:
            break
        assert word in subs, f"README mentions `tailor {' '.join(path + (word,))}`: no such command " \
                             f"(commands here: {', '.join(subs)})"
        parser, path = subs[word], path + (word,)
    assert path in LEAVES, f"README mentions `tailor {' '.join(path)}` without its subcommand"
    return path


def _command_sections() -> dict[tuple[str, ...], str]:
    parts = re.split(r"^### `tailor ([a-z ]+)`\n", CLI, flags=re.M)
    return {tuple(parts[i].split()): parts[i + 1] for i in range(1, len(parts), 2)}


def _mentions(text: str) -> list[list[str]]:
    """Words after `tailor` in inline code and in code-block lines that run tailor."""
    found = [m.split() for m in re.findall(r"`tailor ([^`]+)`", text)]
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M):
        for line in block.splitlines():
            m = re.match(r"\s*(?:\$ )?(?:\.venv/bin/)?tailor (.+)", line)
            if m:
                found.append(m.group(1).split())
    return [[w for w in words if re.fullmatch(r"[a-z]+", w)][:2] for words in found]


def test_cli_section_documents_every_command():
    sections = _command_sections()
    missing = sorted(" ".join(c) for c in LEAVES if c not in sections)
    assert not missing, f"README's CLI reference lacks a `### \\`tailor ...\\`` section for: {missing}"
    for command in sections:
        _resolve(list(command))


def test_cli_mentions_are_real_commands():
    mentions = _mentions(CLI)
    assert mentions, "no `tailor ...` commands found in the CLI reference"
    for words in mentions:
        _resolve(words)


def test_readme_mentions_anywhere_are_real_commands():
    for words in _mentions(README):
        _resolve(words)


@pytest.mark.parametrize("command", sorted(LEAVES), ids=[" ".join(c) for c in sorted(LEAVES)])
def test_cli_section_flags_match_parser(command):
    body = _command_sections().get(command)
    assert body is not None, f"no README section for `tailor {' '.join(command)}`"
    real = _options(LEAVES[command])
    named = set(FLAG.findall(body))
    assert not named - real, (f"README documents `tailor {' '.join(command)}` flags that do not exist: "
                              f"{sorted(named - real)}")
    assert not real - named, (f"README does not document these flags of `tailor {' '.join(command)}`: "
                              f"{sorted(real - named)}")


# -- (d) setup commands and CI --------------------------------------------------------------------

def test_setup_commands_are_in_quick_start():
    lines = {line.strip() for block in code_blocks(section("Quick start"), "bash")
             for line in block.splitlines()}
    for command in SETUP_COMMANDS:
        assert command in lines, f"Quick start must show `{command}` verbatim in a bash block"
    for script in ("quickstart.sh", "test.sh", "setup.sh"):
        assert (ROOT / "scripts" / script).is_file()


def test_ci_runs_the_readme_test_command():
    ci = ROOT / ".ci" / "run"
    commands = [line.strip() for line in ci.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert "bash scripts/test.sh" in commands, ".ci/run must run `bash scripts/test.sh` (the README's)"


# -- methods -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_and_option_is_documented(name):
    methods = section("Methods")
    assert f"`{name}`" in methods, f"README's Methods section does not describe method `{name}`"
    for field in METHODS[name].Config.model_fields:
        assert f"`{field}`" in methods, (
            f"README's Methods section does not document option `{field}` of method `{name}` "
            "(see `tailor methods`)")


def test_learning_rate_defaults_table_matches_the_methods():
    """The table under "Learning-rate defaults" gives each method's `default_lr`; a method it
    does not name has none of its own (the trainer's 5e-5, the table's first row)."""
    from tailorkit.config.train import TRAINER_LR

    text = section("Training options").split("### Learning-rate defaults", 1)[1]
    table: dict[str, float] = {}
    for line in text.splitlines():
        row = re.match(r"\| (.+?) \| `([0-9.e+-]+)` \|", line)
        if row:
            table |= {name: float(row.group(2)) for name in re.findall(r"`(\w+)`", row.group(1))}
    assert table.get("full") == TRAINER_LR
    for name, method in METHODS.items():
        rate = method.default_lr or TRAINER_LR
        assert table.get(name, TRAINER_LR) == rate, f"README gives {name} {table.get(name)}, the code {rate}"
