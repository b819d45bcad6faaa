"""The pages of ``docs/`` follow the code: generated sections equal what the code prints,
links and anchors resolve, and the commands they show take their configs and keys."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pwfl import reference, schema
from pwfl.config import load_config
from pwfl.errors import ConfigError

from .conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "CHANGELOG.md"]
"""The README, every page of docs/ and the changelog."""


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def prose(text: str) -> str:
    """A page without its fenced code blocks, whose lines are not Markdown."""
    return re.sub(r"^```.*?^```[^\n]*$", "", text, flags=re.M | re.S)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: its text lower-cased, punctuation other than
    hyphens and underscores dropped, spaces as hyphens (code spans keep their text)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a page; a repeated heading gets -1, -2, ... as on GitHub."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    for line in prose(page.read_text()).splitlines():
        match = re.match(r"#{1,6} (.*)", line)
        if match:
            slug = anchor(match.group(1))
            n = counts.get(slug, 0)
            counts[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def links(page: Path) -> list[str]:
    """The targets of a page's Markdown links and images, outside code."""
    text = re.sub(r"`[^`\n]*`", "code", prose(page.read_text()))
    return re.findall(r"\]\(([^)\s]+)\)", text)


# ---------------------------------------------------------------- links


def test_the_pages_link_to_each_other():
    readme = set(links(ROOT / "README.md"))
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert page_id(page) in readme, f"README.md does not link to {page_id(page)}"


def test_anchor_follows_githubs_rule():
    assert anchor("PWFL against its baselines (`make run`)") == (
        "pwfl-against-its-baselines-make-run"
    )
    assert anchor("Synthetic(alpha, beta): what a global model can learn") == (
        "syntheticalpha-beta-what-a-global-model-can-learn"
    )
    assert anchor("FedBuff's concurrency") == "fedbuffs-concurrency"
    assert anchor("`[data]`") == "data"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_points_to_a_file_and_anchor_that_exist(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target}: no heading with that anchor in {linked.name}")
    assert not broken, broken


# ---------------------------------------------------------------- generated sections


@pytest.mark.parametrize("name", sorted(reference.GENERATORS))
def test_generated_section_equals_what_the_code_prints(name):
    """Regenerate with ``.venv/bin/python -m pwfl.reference --write``."""
    page = ROOT / reference.BLOCKS[name]
    assert reference.block(page.read_text(), name) == reference.GENERATORS[name]()


def test_the_records_columns_shown_are_the_schemas():
    text = (ROOT / "docs" / "running.md").read_text()
    shown = text.split("<!-- schema:start -->\n", 1)[1].split("\n<!-- schema:end -->", 1)[0]
    assert shown == schema.markdown()


def test_configuration_reference_has_a_row_per_key_of_every_section():
    from pwfl.config import SECTIONS

    text = reference.block((ROOT / "docs" / "configuration.md").read_text(), "configuration")
    for section, cls in SECTIONS.items():
        part = text.split(f"### `[{section}]`\n", 1)[1].split("\n### ", 1)[0]
        rows = [line.split("|")[1].strip() for line in part.splitlines() if line.startswith("| `")]
        assert rows == [f"`{f}`" for f in cls.__dataclass_fields__ if f != "tables"], section
    from pwfl.strategies import STRATEGIES

    for name, policy in STRATEGIES.items():
        if policy.Settings is None:
            assert f"### `[strategy.{name}]`" not in text
            continue
        part = text.split(f"### `[strategy.{name}]`\n", 1)[1].split("\n### ", 1)[0]
        rows = [line.split("|")[1].strip() for line in part.splitlines() if line.startswith("| `")]
        assert rows == [f"`{f}`" for f in policy.Settings.__dataclass_fields__], name


def test_a_key_without_a_docstring_shows_an_empty_meaning():
    class Section:
        documented: int = 1
        """What it is."""
        bare: int = 2

    assert reference.field_docstrings(Section) == {"documented": "What it is."}


def test_write_replaces_only_the_block(tmp_path):
    page = tmp_path / reference.BLOCKS["analysis"]
    page.parent.mkdir(parents=True)
    page.write_text("before\n<!-- analysis:start -->\nold\n<!-- analysis:end -->\nafter\n")
    reference.write(tmp_path, "analysis")
    text = page.read_text()
    assert text.startswith("before\n<!-- analysis:start -->\n### `pwfl.analysis.loading`")
    assert text.endswith("\n<!-- analysis:end -->\nafter\n")
    assert reference.block(text, "analysis") == reference.analysis_markdown()
    with pytest.raises(ValueError, match="no <!-- configuration:start -->"):
        reference.block(text, "configuration")


def test_analysis_reference_lists_every_public_function_with_its_signature():
    from pwfl import analysis

    text = (ROOT / "docs" / "analysis.md").read_text()
    for name in analysis.__all__:
        value = getattr(analysis, name)
        if callable(value) and not name.isupper():
            assert f"`{name}{reference.signature(value)}`" in text, name
    signature = "path: str | Path, target: float | Mapping[str, float] | None = None"
    assert f"`load_results({signature}) -> Results`" in text


def test_the_reference_module_imports_neither_flower_nor_torch():
    code = (
        "import sys, pwfl.reference; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'flwr', 'ray', 'torch'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- commands


def commands(page: Path) -> list[list[str]]:
    """The ``pwfl run`` and ``pwfl compare`` commands of a page's bash blocks, as words."""
    found = []
    for code in re.findall(r"^```bash\n(.*?)^```", page.read_text(), flags=re.M | re.S):
        for line in code.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0].endswith("pwfl") and words[1:2] in (["run"], ["compare"]):
                found.append(words)
    return found


def option(words: list[str], name: str) -> list[str]:
    return [words[i + 1] for i, word in enumerate(words) if word == name]


SHOWN = [(page_id(page), words) for page in PAGES for words in commands(page)]


def test_the_pages_show_commands():
    assert len(SHOWN) > 10
    assert any(page == "README.md" for page, _ in SHOWN)


@pytest.mark.parametrize(
    ("page", "words"), SHOWN, ids=[f"{p}:{' '.join(w[1:4])}" for p, w in SHOWN]
)
def test_a_shown_command_takes_its_config_and_keys(page, words):
    """What a reader copies runs: its config exists and every --set and --vary value is
    a valid key and value (loading the config validates it; nothing is run)."""
    overrides = option(words, "--set")
    if any(":" in value.split("=", 1)[1] for value in overrides):
        pytest.skip("names the reader's own module (package.module:function)")
    configs = option(words, "--config")
    assert len(configs) == 1 and (ROOT / configs[0]).is_file(), words
    varied = [[]]
    for vary in option(words, "--vary"):
        key, values = vary.split("=", 1)
        varied = [[f"{key}={value}"] for value in values.split(",")]
    for extra in varied:
        try:
            load_config(ROOT / configs[0], [*overrides, *extra])
        except ConfigError as error:
            pytest.fail(f"{page}: {' '.join(words)}: {error}")
