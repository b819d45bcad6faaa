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


HOST_COLUMNS = ("host s / round",)
"""Host measurements: ``make run`` rewrites results/compare/quick with this host's times,
so they are not compared (every simulated and accuracy column is)."""


def without_host_columns(table: str) -> list[list[str]]:
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()]
    keep = [i for i, name in enumerate(rows[0]) if name not in HOST_COLUMNS]
    return [[row[i] for i in keep] for row in rows]


@pytest.mark.parametrize(("folder", "table"), TABLES, ids=[f for f, _ in TABLES])
def test_readme_table_is_printed_from_its_summary_csv(folder, table):
    summary = pd.read_csv(ROOT / folder / "summary.csv")
    printed = analysis.summary_markdown(summary, each_set=" / set " in table)
    assert without_host_columns(table) == without_host_columns(printed)


def test_only_host_columns_may_differ():
    table = "| strategy | host s / round | final acc. |\n|---|---|---|\n| pwfl | 3.1 | 0.9 |"
    other = table.replace("3.1", "4.2")
    assert without_host_columns(table) == without_host_columns(other)
    assert without_host_columns(table) != without_host_columns(table.replace("0.9", "0.8"))


def test_readme_shows_the_command_of_every_comparison_the_script_reproduces():
    # Line breaks, continuation backslashes and the .venv/bin/ prefix aside.
    text = " ".join(README.replace("\\\n", " ").replace(".venv/bin/", "").split())
    for name, comparison in reproduce_module().COMPARISONS.items():
        assert comparison.command() in text, name


def test_readme_columns_are_the_schemas():
    from pwfl.schema import markdown

    shown = README.split("<!-- schema:start -->\n", 1)[1].split("\n<!-- schema:end -->", 1)[0]
    assert shown == markdown()
