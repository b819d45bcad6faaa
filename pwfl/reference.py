"""The reference pages of ``docs/`` generated from the code: config keys and the analysis API.

Usage::

    .venv/bin/python -m pwfl.reference configuration   # print the config reference
    .venv/bin/python -m pwfl.reference analysis        # print the analysis API
    .venv/bin/python -m pwfl.reference --write         # rewrite both blocks in docs/

Each page holds its generated block between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` lines; the prose around it is written by hand. The tests
compare the committed blocks with what these functions print, so a field, a
default, a range or a docstring changed in the code fails them until the page is
written again with ``--write``. Importing this module loads neither Flower nor
PyTorch; listing the names a choice key accepts does, since those registries live
in the modules that implement them (``pwfl.config.registered_choices``).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

BLOCKS = {"configuration": "docs/configuration.md", "analysis": "docs/analysis.md"}
"""Generated block name -> the page (relative to the repository) that holds it."""

ANALYSIS_MODULES = (
    "loading",
    "summaries",
    "fairness",
    "multitask",
    "tables",
    "figures",
    "timeline",
    "structure",
)
"""The modules of ``pwfl.analysis``, in the order the page lists them."""


def field_docstrings(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass, by field name.

    Python keeps no attribute docstrings at run time, so they are read from the
    class's source: a string expression right after an annotated assignment.
    """
    definition = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    assert isinstance(definition, ast.ClassDef), cls
    body = definition.body
    docs = {}
    for stmt, after in zip(body, body[1:], strict=False):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[stmt.target.id] = after.value.value
    return docs


def _one_line(text: str) -> str:
    """A docstring as one Markdown table cell: whitespace collapsed, pipes escaped."""
    return " ".join(inspect.cleandoc(text).split()).replace("|", "\\|")


def _default(value: Any) -> str:
    """A default as it is written in a TOML file."""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value!r}`"


def _first_line(obj: Any) -> str:
    """The summary of an object's docstring: its first paragraph, as one line (a
    summary may wrap over two source lines)."""
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def configuration_markdown(choices: dict[str, Any] | None = None) -> str:
    """Every config section and key as Markdown: type, default, range or choices, meaning.

    Parameters
    ----------
    choices
        Dotted key -> the names it accepts; default: ``registered_choices()`` and
        ``simulation.backend``'s ``BACKENDS`` (reading the registries imports the
        modules that hold them, PyTorch and Flower among them).

    Returns
    -------
    str
        One ``### `[section]` `` heading per section (``seed`` and ``[[weight_set]]``
        first, as the top level of a file), each with its docstring's first line and a
        table with a row per key.
    """
    from pwfl import config

    if choices is None:
        choices = {**config.registered_choices(), "simulation.backend": config.BACKENDS}
    ranges = config.ranges()
    top = field_docstrings(config.Config)  # seed's range below; the sections' in _rows
    parts = [
        "### Top level",
        "",
        _first_line(config.Config),
        "",
        "| key | type | default | range / choices | meaning |",
        "|---|---|---|---|---|",
        f"| `seed` | int | `{config.Config().seed!r}` | "
        f"{ranges['seed'].rule(True).removeprefix('must be ')} | {_one_line(top['seed'])} |",
        f"| `[[weight_set]]` | array of tables | none | keys: "
        f"{', '.join(f'`{k}`' for k in config.PER_SET_KEYS)}, `name` | "
        f"{_one_line(top['weight_set'])} |",
    ]
    tables = []
    if "strategy.name" in choices:  # the strategies that declare keys of their own
        from pwfl.strategies import STRATEGIES

        tables = [(f"strategy.{n}", c.Settings) for n, c in STRATEGIES.items() if c.Settings]
    for section, cls in [*config.SECTIONS.items(), *tables]:
        parts += [
            "",
            f"### `[{section}]`",
            "",
            _first_line(cls),
            "",
            "| key | type | default | range / choices | meaning |",
            "|---|---|---|---|---|",
            *_rows(section, cls, choices),
        ]
    return "\n".join(parts)


def _rows(section: str, cls: type, choices: dict[str, Any]) -> list[str]:
    """A table row per key of a section (or of a strategy's own table)."""
    from pwfl.config import RANGE

    docs = field_docstrings(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.name == "tables":  # the strategies' own tables, each listed as a section
            continue
        key = f"{section}.{f.name}"
        kind = f.type if isinstance(f.type, str) else f.type.__name__
        if RANGE in f.metadata:
            accepts = f.metadata[RANGE].rule(kind == "int").removeprefix("must be ")
        elif key in choices:
            accepts = " / ".join(f"`{name}`" for name in choices[key])
        else:
            accepts = ""
        meaning = _one_line(docs.get(f.name, ""))
        rows.append(f"| `{f.name}` | {kind} | {_default(f.default)} | {accepts} | {meaning} |")
    return rows


class _Annotation:
    """An annotation kept as the text it was written as (``from __future__ import
    annotations`` makes them strings; ``inspect`` would quote them)."""

    def __init__(self, text: Any):
        self.text = text

    def __repr__(self) -> str:
        return self.text if isinstance(self.text, str) else inspect.formatannotation(self.text)


def signature(obj: Callable) -> str:
    """A function's or class's signature as written in its source: ``(path: str | Path)``."""
    sig = inspect.signature(obj)
    empty = inspect.Parameter.empty
    params = [
        p.replace(annotation=_Annotation(p.annotation)) if p.annotation is not empty else p
        for p in sig.parameters.values()
    ]
    returns = sig.return_annotation
    if inspect.isclass(obj):
        returns = empty  # a class's signature is its constructor's arguments
    return str(
        sig.replace(
            parameters=params,
            return_annotation=_Annotation(returns) if returns is not empty else empty,
        )
    )


def analysis_markdown() -> str:
    """Every public function and class of ``pwfl.analysis``, by module, as Markdown.

    Returns
    -------
    str
        One ``### `pwfl.analysis.<module>` `` heading per module, its docstring's first
        line, and a list item per function or class defined there and named in
        ``pwfl.analysis.__all__``: its signature and its docstring's first line, in the
        order of ``__all__``. Constants are listed by name after the items; those
        ``pwfl.schema`` defines (the column types) at the end.
    """
    analysis = importlib.import_module("pwfl.analysis")
    schema = importlib.import_module("pwfl.schema")
    from_schema = [n for n in analysis.__all__ if n.isupper() and n in vars(schema)]
    parts: list[str] = []
    for name in ANALYSIS_MODULES:
        module = importlib.import_module(f"pwfl.analysis.{name}")
        items, constants = [], []
        for public in analysis.__all__:
            value = getattr(analysis, public)
            if inspect.isfunction(value) or inspect.isclass(value):
                if value.__module__ == module.__name__:
                    kind = "class " if inspect.isclass(value) else ""
                    items.append(f"- {kind}`{public}{signature(value)}`: {_first_line(value)}")
            elif public in vars(module) and public.isupper() and public not in from_schema:
                constants.append(f"`{public}`")
        parts += ["", f"### `pwfl.analysis.{name}`", "", _first_line(module), "", *items]
        if constants:
            parts += ["", f"Constants: {', '.join(constants)}."]
    names = ", ".join(f"`{n}`" for n in from_schema)
    parts += ["", f"Constants of `pwfl.schema`, importable from `pwfl.analysis` too: {names}."]
    return "\n".join(parts[1:])


GENERATORS: dict[str, Callable[[], str]] = {
    "configuration": configuration_markdown,
    "analysis": analysis_markdown,
}


def _markers(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- {name}:start -->\n)(.*?)(<!-- {name}:end -->)", re.DOTALL)


def block(text: str, name: str) -> str:
    """The generated block ``name`` of a page's text (between its marker lines)."""
    match = _markers(name).search(text)
    if match is None:
        raise ValueError(f"the page has no <!-- {name}:start --> ... <!-- {name}:end --> block")
    return match.group(2).removesuffix("\n")


def write(root: Path, name: str) -> Path:
    """Rewrite the generated block ``name`` of its page under ``root``; return the page."""
    page = root / BLOCKS[name]
    text = page.read_text()
    block(text, name)  # the page must hold the block's markers
    generated = GENERATORS[name]()
    page.write_text(
        _markers(name).sub(lambda m: f"{m.group(1)}{generated}\n{m.group(3)}", text, count=1)
    )
    return page


def main() -> None:
    """Print a generated block, or rewrite every block in the repository's pages."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("block", nargs="?", choices=sorted(GENERATORS), help="block to print")
    parser.add_argument(
        "--write", action="store_true", help="rewrite the blocks of docs/ in this repository"
    )
    args = parser.parse_args()
    if args.write:
        root = Path(__file__).resolve().parents[1]
        for name in [args.block] if args.block else GENERATORS:
            print(write(root, name))
    elif args.block:
        print(GENERATORS[args.block]())
    else:
        parser.error("name a block to print, or give --write")


if __name__ == "__main__":
    main()
