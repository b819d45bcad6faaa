"""The analysis package as a whole: its imports and its public names."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import subprocess
import sys

from pwfl import analysis, reference

from .conftest import ROOT

MODULES = list(reference.ANALYSIS_MODULES)


def docs_api_table() -> list[tuple[str, list[str]]]:
    """(module, names) of every row of the analysis API table of ``docs/analysis.md``.

    A name is a backticked identifier, bare or called (``load_results(path)``);
    file names such as ``summary.csv`` are not names.
    """
    page = (ROOT / "docs" / "analysis.md").read_text()
    section = page.split("\n## The analysis API\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].endswith(".py`"):
            continue
        spans = re.findall(r"`([^`]+)`", cells[1])
        names = [m.group(1) for s in spans if (m := re.fullmatch(r"([A-Za-z_]\w*)(\(.*\))?", s))]
        rows.append((cells[0].strip("`").removesuffix(".py"), names))
    return rows


def test_analysis_imports_neither_flower_nor_ray():
    code = (
        "import sys, pwfl.analysis; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'flwr', 'ray', 'torch'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_name_in_all_is_importable_from_the_package():
    assert len(set(analysis.__all__)) == len(analysis.__all__)
    namespace: dict[str, object] = {}
    exec("from pwfl.analysis import *", namespace)
    missing = [name for name in analysis.__all__ if name not in namespace]
    assert not missing


def test_all_lists_every_public_name_the_modules_define():
    left_out = []
    for module_name in MODULES:
        module = importlib.import_module(f"pwfl.analysis.{module_name}")
        for name, value in vars(module).items():
            defined_here = getattr(value, "__module__", None) == module.__name__
            constant = name.isupper()
            if not name.startswith("_") and (defined_here or constant):
                if name not in analysis.__all__:
                    left_out.append(f"{module_name}.{name}")
    assert not left_out


def test_all_covers_the_docs_api_table_and_each_name_is_in_its_row_module():
    table = docs_api_table()
    assert [module for module, _ in table] == MODULES
    # The table names the fields of Results next to it; they are attributes, not imports.
    fields = {field.name for field in dataclasses.fields(analysis.Results)}
    misplaced, unknown = [], []
    for module, names in table:
        assert names, module
        for name in names:
            if name in fields:
                continue
            if name not in analysis.__all__:
                unknown.append(name)
                continue
            value = getattr(analysis, name)
            if inspect.isfunction(value) or inspect.isclass(value):
                if value.__module__ != f"pwfl.analysis.{module}":
                    misplaced.append(
                        f"{name} in {value.__module__}, docs/analysis.md says {module}"
                    )
    assert not unknown
    assert not misplaced
