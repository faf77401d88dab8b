"""One place that finds the files lossc ships: grammar, templates, catalog."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def resource(*parts: str) -> Path:
    """Path of a shipped file or folder, e.g. ``resource("grammar", "lossc.lark")``.

    A wheel carries the folders inside the package (``lossc/_data``); a source
    checkout or editable install has them at the top of the repository.
    """
    for base in (_PACKAGE / "_data", _PACKAGE.parent):
        path = base.joinpath(*parts)
        if path.exists():
            return path
    raise FileNotFoundError(f"lossc resource {'/'.join(parts)} is missing from the installation")
