"""The docs stand on their own: every repository path they name exists, and the README's
layout names every module of the product."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "RESULTS.md"]
PRODUCT = ("common", "services", "store", "loader")
# A name in the layout block: a file with an extension, a folder, or a root file.
ENTRY = re.compile(r"(?<![\w/.-])([\w-]+\.(?:py|ini|toml|json|md)|[\w-]+/|Makefile)(?![\w/])")


def _tracked_top_level() -> set[str]:
    names = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return {name.split("/")[0] for name in names} | {p.name for p in ROOT.iterdir()}


def _paths_named(text: str) -> set[str]:
    """Repository paths in backticks: `services/saver/__main__.py`, `store/firestore/`."""
    top = _tracked_top_level()
    found = set()
    for token in re.findall(r"`([\w./-]+)`", text):
        token = token.rstrip(".")
        if "/" in token and token.split("/")[0] in top and not token.startswith("var/"):
            found.add(token)
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_path_a_doc_names_exists(doc: Path):
    missing = sorted(p for p in _paths_named(doc.read_text()) if not (ROOT / p).exists())
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


def _layout() -> dict[str, set[str]]:
    """The README's layout block as {folder: names listed for it}."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Layout") :]
    block = section[section.index("```\n") + 4 :]
    block = block[: block.index("```")]
    layout: dict[str, set[str]] = {}
    folder = ""
    for line in block.splitlines():
        if line and not line[0].isspace():
            folder, _, line = line.partition(" ")
            layout.setdefault(folder, set())
        layout[folder].update(ENTRY.findall(line))
    return layout


def test_the_layout_names_only_what_exists():
    missing = [
        f"{folder}{name}"
        for folder, names in _layout().items()
        for name in names
        if not (ROOT / folder / name).exists()
    ]
    assert not missing, f"the README's layout names files that do not exist: {missing}"


def test_the_layout_names_every_module_of_the_product():
    layout = _layout()
    unnamed = []
    for package in PRODUCT:
        for module in sorted((ROOT / package).rglob("*.py")):
            if module.name == "__init__.py":
                continue
            folder = module.parent.relative_to(ROOT).as_posix() + "/"
            if module.name not in layout.get(folder, set()):
                unnamed.append(module.relative_to(ROOT).as_posix())
    assert not unnamed, f"the README's layout does not name: {unnamed}"
