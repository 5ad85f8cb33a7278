"""`flask translate init|update|compile`: the tutorial's commands around pybabel."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "app" / "translations"
POT = ROOT / "messages.pot"


def pybabel(*args: str) -> None:
    """Run one pybabel command from the project root; fail loudly if it fails."""
    result = subprocess.run([sys.executable, "-m", "babel.messages.frontend", *args], cwd=ROOT)
    if result.returncode != 0:
        raise click.ClickException(f"pybabel {args[0]} failed (exit {result.returncode}).")


def extract() -> None:
    """Collect every marked string of the code and templates into messages.pot."""
    pybabel("extract", "-F", "babel.cfg", "-k", "_l", "--no-location", "--sort-output", "-o", str(POT), ".")


@click.group()
def translate() -> None:
    """Translation and localization commands."""


@translate.command()
@click.argument("lang")
def init(lang: str) -> None:
    """Start a new language."""
    extract()
    try:
        pybabel("init", "-i", str(POT), "-d", str(TRANSLATIONS), "-l", lang)
    finally:
        POT.unlink(missing_ok=True)


@translate.command()
def update() -> None:
    """Bring every language up to date with the strings of the code."""
    extract()
    try:
        pybabel("update", "-i", str(POT), "-d", str(TRANSLATIONS), "--no-fuzzy-matching")
    finally:
        POT.unlink(missing_ok=True)


@translate.command()
def compile() -> None:  # noqa: A001 (the tutorial's command name)
    """Compile every language's catalogue (make does this; .mo files are never committed)."""
    pybabel("compile", "-d", str(TRANSLATIONS))
