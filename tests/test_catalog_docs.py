"""docs/catalog.md is up to date with catalog/ (regenerate: python scripts/catalog_docs.py)."""

from pathlib import Path

import pytest

import lossc

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGE = DOCS / "catalog.md"
STALE = "docs/catalog.md is stale: run python scripts/catalog_docs.py"


@pytest.mark.parametrize("entry", lossc.catalog(), ids=lambda e: e.name)
def test_every_catalog_loss_is_documented_as_written(entry):
    text = PAGE.read_text()
    assert f"\n## {entry.name}\n" in text, STALE
    section = text.split(f"\n## {entry.name}\n", 1)[1].split("\n## ", 1)[0]
    lines = lossc.source(entry.name).splitlines()
    body = "\n".join(lines[next(i for i, line in enumerate(lines) if line.startswith("loss ")):])
    assert f"```\n{body}\n```" in section, STALE
    assert entry.citation in section, STALE
    assert f"![{entry.name}](img/{entry.name}.png)" in section
    assert (DOCS / "img" / f"{entry.name}.png").read_bytes()[:4] == b"\x89PNG"


def test_no_documented_loss_is_gone_from_the_catalog():
    documented = {line[3:] for line in PAGE.read_text().splitlines() if line.startswith("## ")}
    assert documented == {e.name for e in lossc.catalog()}, STALE
