"""Check results cached by the spec's hash, the parameter values and the checker's own source."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from ..cache import cache_dir, read_entry, write_entry
from .verdict import Report

_MEMORY: dict = {}


@lru_cache(maxsize=1)
def checker_version() -> str:
    """A digest of lossc/check/**/*.py and the lossc version: a changed checker never reads old results."""
    from .. import __version__
    h = hashlib.sha256(__version__.encode())
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def key(spec_hash: str, params: dict) -> str:
    text = json.dumps([spec_hash, params, checker_version()], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def folder() -> Path | None:
    """The on-disk cache (``lossc.cache.cache_dir("check")``); none when LOSSC_NO_CACHE is set."""
    return cache_dir("check")


def load(k: str) -> Report | None:
    if k in _MEMORY:
        return _MEMORY[k]
    entry = read_entry("check", k)
    if entry is None:
        return None
    try:
        report = Report.from_dict(entry)
    except (ValueError, KeyError, TypeError):
        return None
    _MEMORY[k] = report
    return report


def store(k: str, report: Report) -> None:
    _MEMORY[k] = report
    write_entry("check", k, report.as_dict())


def clear_memory() -> None:
    _MEMORY.clear()
