"""The README shows what the repository holds: its figures exist and its tables are the CSVs."""

from __future__ import annotations

import importlib.util
import re

import pandas as pd
import pytest

from .conftest import ROOT

README = (ROOT / "README.md").read_text()


def summary_table_module():
    spec = importlib.util.spec_from_file_location(
        "summary_table", ROOT / "experiments" / "summary_table.py"
    )
    module = importlib.util.module_from_spec(spec)
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
    summary = pd.read_csv(ROOT / folder / "summary.csv")
    assert table == summary_table_module().markdown(summary)
