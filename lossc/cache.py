"""The on-disk caches' common ground: where they live, how entries are written and read back.

``$LOSSC_CACHE_DIR/<section>``, else ``$XDG_CACHE_HOME/lossc/<section>`` or ``~/.cache/lossc/<section>``;
no disk cache at all when ``LOSSC_NO_CACHE`` is set. Sections: ``check`` (property reports) and
``compile`` (generated modules). Entries are JSON files written atomically (a temporary file in the same
folder, then ``os.replace``), so that concurrent writers of the same entry leave one whole file and
readers never see half of one; an entry that cannot be read is treated as absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

__all__ = ["cache_dir", "read_entry", "write_entry", "code_digest"]


def cache_dir(section: str) -> Path | None:
    """The folder of one cache section, or None when ``LOSSC_NO_CACHE`` turns disk caching off."""
    if os.environ.get("LOSSC_NO_CACHE"):
        return None
    base = os.environ.get("LOSSC_CACHE_DIR")
    if base:
        return Path(base) / section
    root = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(root) / "lossc" / section


def read_entry(section: str, key: str) -> dict | None:
    """The JSON object stored under ``key``, or None (absent, unreadable, not an object)."""
    folder = cache_dir(section)
    if folder is None:
        return None
    try:
        value = json.loads((folder / f"{key}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def write_entry(section: str, key: str, value: dict) -> None:
    """Store a JSON object under ``key`` atomically; a cache that cannot be written is no cache."""
    folder = cache_dir(section)
    if folder is None:
        return
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(value, handle)
        os.replace(tmp, folder / f"{key}.json")
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


@lru_cache(maxsize=1)
def code_digest() -> str:
    """A digest of the lossc version and of everything that shapes generated code: the package's Python
    files, the grammar, the templates and the catalog (losses call each other by name)."""
    from . import __version__
    from .resources import resource
    h = hashlib.sha256(__version__.encode())
    package = Path(__file__).resolve().parent
    files = sorted(package.rglob("*.py"))
    for folder in ("grammar", "templates", "catalog"):
        files += sorted(p for p in resource(folder).rglob("*") if p.is_file())
    for path in files:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]
