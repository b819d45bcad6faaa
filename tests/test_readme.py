"""The README shows what the repository holds: its figures exist and its tables are the CSVs."""

from __future__ import annotations

import importlib.util
import re
import sys

import pandas as pd
import pytest

from pwfl import analysis

from .conftest import ROOT

README = (ROOT / "README.md").read_text()


def reproduce_module():
    spec = importlib.util.spec_from_file_location(
        "reproduce", ROOT / "experiments" / "reproduce.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def summary_tables(text: str) -> list[tuple[str, str]]:
    """(comparison folder, Markdown table) of every table printed by summary_table.py.

    A table belongs to the last ``results/compare/<name>`` folder named above it
    (the ``--out`` of its command, or the summary.csv path).
    """
    found, folder, block = [], None, []
    for line in [*text.splitlines(), ""]:
        if line.startswith("| strategy | final acc."):
            block = [line]
        elif block and line.startswith("|"):
            block.append(line)
        elif block:
            found.append((folder, "\n".join(block)))
            block = []
        for match in re.finditer(r"results/compare/[\w-]+", line):
            folder = match.group(0)
    return found


TABLES = summary_tables(README)


def test_every_figure_in_the_readme_is_in_the_repository():
    figures = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", README)
    assert figures
    missing = [f for f in figures if not (ROOT / f).is_file()]
    assert not missing


def test_the_readme_has_summary_tables():
    assert len(TABLES) >= 3
    assert all(folder is not None for folder, _ in TABLES)


@pytest.mark.parametrize(("folder", "table"), TABLES, ids=[f for f, _ in TABLES])
def test_readme_table_is_printed_from_its_summary_csv(folder, table):
    """Character for character: the tables hold no host measurement."""
    summary = pd.read_csv(ROOT / folder / "summary.csv")
    assert table == analysis.summary_markdown(summary, each_set=" / set " in table)


def test_every_summary_table_of_the_readme_is_found():
    """A table whose header line is broken would be skipped by the check above."""
    headers = [line for line in README.splitlines() if "| strategy | final acc." in line]
    assert all(line.startswith("| strategy | final acc.") for line in headers), [
        line for line in headers if not line.startswith("|")
    ]
    assert len(headers) == len(TABLES)


def test_two_readme_tables_of_different_comparisons_differ():
    """A table copied under another comparison's heading is not that comparison's."""
    by_folder: dict[str, set[str]] = {}
    for folder, table in TABLES:
        by_folder.setdefault(table, set()).add(folder)
    assert all(len(folders) == 1 for folders in by_folder.values()), by_folder


def test_readme_shows_the_command_of_every_comparison_the_script_reproduces():
    # Line breaks, continuation backslashes and the .venv/bin/ prefix aside.
    text = " ".join(README.replace("\\\n", " ").replace(".venv/bin/", "").split())
    for name, comparison in reproduce_module().COMPARISONS.items():
        assert comparison.command() in text, name


def test_readme_columns_are_the_schemas():
    from pwfl.schema import markdown

    shown = README.split("<!-- schema:start -->\n", 1)[1].split("\n<!-- schema:end -->", 1)[0]
    assert shown == markdown()
