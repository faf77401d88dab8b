"""Check results cached by the spec's hash, the parameter values and the checker's own source."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from .verdict import Report

_MEMORY: dict = {}


@lru_cache(maxsize=1)
def checker_version() -> str:
    """A digest of lossc/check/*.py and the lossc version: a changed checker never reads old results."""
    from .. import __version__
    h = hashlib.sha256(__version__.encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def key(spec_hash: str, params: dict) -> str:
    text = json.dumps([spec_hash, params, checker_version()], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def folder() -> Path | None:
    """The on-disk cache: $LOSSC_CACHE_DIR, else the user cache dir; none when LOSSC_NO_CACHE is set."""
    if os.environ.get("LOSSC_NO_CACHE"):
        return None
    base = os.environ.get("LOSSC_CACHE_DIR")
    if base:
        return Path(base)
    root = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(root) / "lossc" / "check"


def load(k: str) -> Report | None:
    if k in _MEMORY:
        return _MEMORY[k]
    d = folder()
    if d is None:
        return None
    try:
        report = Report.from_dict(json.loads((d / f"{k}.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    _MEMORY[k] = report
    return report


def store(k: str, report: Report) -> None:
    _MEMORY[k] = report
    d = folder()
    if d is None:
        return
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(report.as_dict(), handle)
        os.replace(tmp, d / f"{k}.json")
    except OSError:
        pass  # a cache that cannot be written is no cache


def clear_memory() -> None:
    _MEMORY.clear()
