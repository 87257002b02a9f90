"""The documentation site's sources agree with the repository (scripts/docs builds it with mkdocs --strict)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def nav_pages() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text[text.index("\nnav:") :]
    return re.findall(r"^\s+- (?:[^:\n]+: )?(\S+\.md)\s*$", nav, flags=re.MULTILINE)


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page():
    pages = nav_pages()
    on_disk = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(pages) == on_disk
    assert "protocol.md" in pages


def test_each_reference_page_documents_a_module_of_the_package():
    stages = "api ingest clean augment scale solve fastik centres reps pipeline offline batch errors".split()
    stages += ["settings", "config"]  # the settings' tree, and the rules of the settings file
    documented = []
    for page in sorted((DOCS / "reference").glob("*.md")):
        for module in re.findall(r"^::: (kinestream(?:\.\w+)*)$", page.read_text(), flags=re.MULTILINE):
            path = ROOT / "src" / Path(*module.split("."))
            assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), module
            documented.append(module.removeprefix("kinestream."))
    # each stage once; a package's own modules may follow on its page (their notes, e.g. reps.counter)
    assert sorted(m for m in documented if "." not in m) == sorted(stages)
    assert all(m.split(".")[0] in stages for m in documented), documented
