"""The README and the results page show what the repository holds: figures that exist and
tables that are the CSVs they are printed from."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from pwfl import analysis

from .conftest import ROOT

README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "results.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
"""Every page a table or a figure may be shown on."""


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


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


TABLES = [
    (page_id(page), folder, table)
    for page in PAGES
    for folder, table in summary_tables(page.read_text())
]


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_figure_a_page_shows_is_in_the_repository(page):
    # A figure's path is relative to the page that shows it, as GitHub renders it.
    figures = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", page.read_text())
    missing = [f for f in figures if not (page.parent / f).resolve().is_file()]
    assert not missing


def test_the_readme_and_the_results_page_show_figures():
    for page in (README, RESULTS):
        assert re.search(r"!\[[^\]]*\]\(([^)\s]+)\)", page.read_text()), page_id(page)


def test_the_readme_shows_the_main_table_and_the_results_page_the_others():
    readme = [folder for page, folder, _ in TABLES if page == "README.md"]
    assert readme == ["results/compare/quick"]
    results = {folder for page, folder, _ in TABLES if page == "docs/results.md"}
    expected = {comparison.out for comparison in reproduce_module().COMPARISONS.values()}
    assert expected <= results


@pytest.mark.parametrize(
    ("page", "folder", "table"), TABLES, ids=[f"{p}:{f}" for p, f, _ in TABLES]
)
def test_table_is_printed_from_its_summary_csv(page, folder, table):
    """Character for character: the tables hold no host measurement."""
    assert folder is not None, f"{page}: a table names no results/compare folder above it"
    summary = pd.read_csv(ROOT / folder / "summary.csv")
    assert table == analysis.summary_markdown(summary, each_set=" / set " in table)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_summary_table_of_a_page_is_found(page):
    """A table whose header line is broken would be skipped by the check above."""
    text = page.read_text()
    headers = [line for line in text.splitlines() if "| strategy | final acc." in line]
    assert all(line.startswith("| strategy | final acc.") for line in headers), [
        line for line in headers if not line.startswith("|")
    ]
    assert len(headers) == len(summary_tables(text))


def test_two_tables_of_different_comparisons_differ():
    """A table copied under another comparison's heading is not that comparison's; the
    README's main table shown again on the results page is the same comparison's."""
    by_table: dict[str, set[str]] = {}
    for _, folder, table in TABLES:
        by_table.setdefault(table, set()).add(folder)
    assert all(len(folders) == 1 for folders in by_table.values()), by_table


def _flat(text: str) -> str:
    # Line breaks, continuation backslashes and the .venv/bin/ prefix aside.
    return " ".join(text.replace("\\\n", " ").replace(".venv/bin/", "").split())


def test_results_page_shows_the_command_of_every_comparison_the_script_reproduces():
    text = _flat(RESULTS.read_text())
    for name, comparison in reproduce_module().COMPARISONS.items():
        assert comparison.command() in text, name


def test_readme_shows_the_main_comparison_as_make_run_runs_it():
    make_run = re.search(r"^run:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    command = _flat(make_run.group(1).replace("$(BIN)/", ""))
    assert command.startswith("pwfl compare --config experiments/configs/quick.toml")
    assert command in _flat(README.read_text())


def test_ci_runs_the_readme_test_command():
    """``.ci/run`` runs exactly the command the README's first lines give for the tests."""
    steps = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))
    ]
    first_block = README.read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in first_block.splitlines()]
    assert steps == ["make test"]
    assert commands == ["make run", "make test"]


def test_the_multi_task_tables_are_the_studys_csv_files():
    from pwfl.mmfl import markdown

    text = (ROOT / "docs" / "results.md").read_text()
    for name in ("tasks", "concurrent", "contrasts"):
        table = markdown(pd.read_csv(ROOT / "results" / "mmfl" / f"{name}.csv"))
        assert table in text, name
