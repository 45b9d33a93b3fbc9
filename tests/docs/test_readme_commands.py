"""Every difflab command in README.md composes: its config groups, options and keys exist as written.

Each ``difflab-train|sample|evaluate ...`` line of the README's code blocks is composed with Hydra exactly as the
entry point would (the first value of a sweep list, placeholders such as ``ckpt_path=...`` filled in; commands
with a user's own ``--config-dir`` are run by tests/packaging/test_wheel.py). The
documented error examples (``$ difflab-train ...`` followed by ``difflab-train: error: ...``) are run through
``train``'s checks and must fail with the documented line.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from conftest import REPO_ROOT, compose_config

from difflab.errors import ConfigError
from difflab.train import train

README = (REPO_ROOT / "README.md").read_text()
COMMAND = re.compile(r"^\s*(?:\$ |\.venv/bin/)?(difflab-(?:train|sample|evaluate|report))\b(.*)$")
HYDRA_FLAGS = {"--multirun", "-m", "--cfg", "job", "hydra", "all"}


def code_lines(text: str) -> list[str]:
    """The lines of the README's fenced code blocks and indented code lines."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            lines.append(line)
    return lines


def first_of_sweep(arg: str) -> str:
    """``key=a,b,c`` -> ``key=a`` (a Hydra sweep); lists in brackets are kept whole."""
    key, _, value = arg.partition("=")
    if "," in value and not value.startswith("["):
        value = value.split(",")[0]
    return f"{key}={value}"


def readme_commands() -> list[tuple[str, list[str], str]]:
    """(program, overrides, line) for every difflab command line of the README."""
    found = []
    for line in code_lines(README):
        match = COMMAND.match(line)
        if not match or line.lstrip().startswith(("difflab-train: error", "difflab-evaluate: error")):
            continue
        if "--config-dir" in line or "hydra.searchpath" in line:
            continue  # a user's own config directory: run by tests/packaging/test_wheel.py
        program, rest = match.group(1), match.group(2).split("  #")[0].split(" # ")[0]
        args = [a for a in shlex.split(rest) if a not in HYDRA_FLAGS and "<" not in a]
        args = [a.replace("ckpt_path=...", "ckpt_path=/run/checkpoints/last.ckpt") for a in args]
        found.append((program, [first_of_sweep(a) for a in args], line.strip()))
    return found


COMMANDS = readme_commands()


def test_the_readme_has_commands_of_every_entry_point():
    assert {program for program, _, _ in COMMANDS} == {"difflab-train", "difflab-sample", "difflab-evaluate",
                                                        "difflab-report"}
    assert len(COMMANDS) >= 40


@pytest.mark.parametrize(("program", "overrides", "line"), COMMANDS, ids=[c[2][:80] for c in COMMANDS])
def test_readme_command_composes(program, overrides, line, tmp_path, hydra_cleanup):
    config_name = program.removeprefix("difflab-")
    if config_name in ("sample", "evaluate") and not any(o.startswith("ckpt_path=") for o in overrides):
        overrides = [*overrides, "ckpt_path=/run/checkpoints/last.ckpt"]
    cfg = compose_config(config_name, overrides, tmp_path)
    assert cfg.task_name == config_name


def documented_errors() -> list[tuple[list[str], str]]:
    """(overrides, error line) of every ``$ difflab-train ...`` example followed by its error line."""
    lines, examples = code_lines(README), []
    for line, answer in zip(lines, lines[1:]):
        if line.startswith("$ difflab-train") and answer.startswith("difflab-train: error: ") and "<" not in line:
            args = shlex.split(line.split("#")[0].removeprefix("$ difflab-train"))
            examples.append((args, answer.removeprefix("difflab-train: error: ")))
    return examples


ERRORS = documented_errors()


def test_the_readme_documents_errors():
    assert len(ERRORS) >= 2


@pytest.mark.parametrize(("overrides", "message"), ERRORS, ids=[" ".join(e[0]) for e in ERRORS])
def test_documented_error_is_the_one_printed(overrides, message, tmp_path, hydra_cleanup):
    cfg = compose_config("train", overrides, tmp_path)
    with pytest.raises(ConfigError) as err:
        train(cfg)
    assert str(err.value) == message
    assert not any(Path(tmp_path).iterdir()), "nothing is written before the checks pass"
