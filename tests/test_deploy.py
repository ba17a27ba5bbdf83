"""The cluster files: the compose file parses, and every nasfarm command it (or the README) runs exists."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import yaml

from nasfarm.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _compose_commands() -> list[str]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    commands = []
    for service in compose["services"].values():
        command = service.get("command")
        if isinstance(command, list):
            command = " ".join(command)
        if command:
            commands.append(" ".join(command.split()))
    return commands


def _nasfarm_invocations(text: str) -> list[list[str]]:
    """Every `nasfarm ...` invocation in a shell snippet, split into words (up to && ; | or newline)."""
    found = []
    for match in re.finditer(r"\bnasfarm\s+([^&;|\n`\"]+)", text):
        words = shlex.split(match.group(1))
        if words and not words[0].startswith("-"):
            found.append(words)
    return found


def _resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    """Walk the click tree along the words; return the leaf command and the remaining words."""
    ctx = click.Context(main)
    command: click.Command = main
    rest = list(words)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(ctx, rest[0])
        assert sub is not None, f"no command 'nasfarm {' '.join(words)}' (stuck at {rest[0]!r})"
        command, rest = sub, rest[1:]
    return command, rest


def _check_options(command: click.Command, rest: list[str], words: list[str]) -> None:
    known = {opt for param in command.params for opt in getattr(param, "opts", [])}
    for word in rest:
        if word.startswith("--"):
            name = word.split("=", 1)[0]
            assert name in known, f"'nasfarm {' '.join(words)}': unknown option {name}"


def test_compose_file_services_and_safety() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "ray-head", "ray-worker", "scheduler"} <= set(services)
    postgres = services["postgres"]
    assert re.fullmatch(r"postgres:\d+(\.\d+)?", postgres["image"]), "pin PostgreSQL's major version"
    assert "healthcheck" in postgres
    for port in postgres.get("ports", []):
        assert str(port).startswith("127.0.0.1:"), "PostgreSQL must not be published beyond localhost"
    assert "${POSTGRES_PASSWORD" in (ROOT / "docker-compose.yml").read_text()
    assert not (ROOT / ".env").exists() or ".env" in (ROOT / ".gitignore").read_text()
    devices = services["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_config_parses() -> None:
    result = subprocess.run(
        ["docker-compose", "--env-file", ".env.example", "config", "-q"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr


def test_dockerfile_copies_existing_paths() -> None:
    for line in (ROOT / "docker" / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"


def _readme_code() -> list[str]:
    """The README's fenced code blocks and inline code spans: where its commands are."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.DOTALL)
    without_blocks = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return blocks + re.findall(r"`([^`\n]+)`", without_blocks)


def test_every_nasfarm_command_in_compose_and_readme_exists() -> None:
    texts = _compose_commands() + _readme_code()
    invocations = [words for text in texts for words in _nasfarm_invocations(text)]
    assert any(words[0] == "run" for words in invocations)
    for words in invocations:
        command, rest = _resolve(words)
        _check_options(command, rest, words)
