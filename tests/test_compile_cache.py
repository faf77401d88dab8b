"""The compile cache: generated modules on disk, keyed by the spec text, its parameters that shape the
program, the target and the digest of lossc's code; atomic writes; bad entries ignored and rewritten;
eight processes compiling one loss at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import lossc
from lossc import api
from lossc.cache import cache_dir, code_digest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh, empty cache folder and an empty in-memory cache."""
    monkeypatch.delenv("LOSSC_NO_CACHE", raising=False)
    monkeypatch.setenv("LOSSC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(api, "_MEMORY", {})
    return tmp_path / "compile"


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json"))


def _no_compiling(monkeypatch):
    def refuse(*args):
        raise AssertionError("compiled again instead of reading the cache")
    monkeypatch.setattr(api, "_derive_checked", refuse)


def test_sections_share_one_root(tmp_path, monkeypatch):
    monkeypatch.delenv("LOSSC_NO_CACHE", raising=False)
    monkeypatch.setenv("LOSSC_CACHE_DIR", str(tmp_path))
    assert cache_dir("compile") == tmp_path / "compile" and cache_dir("check") == tmp_path / "check"
    monkeypatch.delenv("LOSSC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("compile") == tmp_path / "xdg" / "lossc" / "compile"
    monkeypatch.setenv("LOSSC_NO_CACHE", "1")
    assert cache_dir("compile") is None


def test_a_second_process_reads_the_module_from_disk(cache, monkeypatch):
    source = lossc.generate("focal", gamma=0.5)
    (entry,) = _entries(cache)
    stored = json.loads(entry.read_text())
    assert stored["source"] == source and stored["name"] == "focal" and stored["params"] == ["gamma"]
    assert stored["spec_hash"] == lossc.parse("focal").hash
    monkeypatch.setattr(api, "_MEMORY", {})  # as a new process finds it
    _no_compiling(monkeypatch)
    assert lossc.generate("focal", gamma=2.5) == source  # a fractional float never shapes the program
    module = lossc.loss("focal", gamma=1.25, backend="torch")
    assert type(module).__name__ == "FocalLoss"
    with pytest.raises(lossc.LossParamError, match="no parameter gama") as info:
        lossc.loss("focal", gama=2.5, backend="torch")  # parameter names are checked on a hit too
    assert info.value.hint == "did you mean gamma?"


def test_the_key_covers_text_target_structure_and_lossc_code(cache, monkeypatch):
    lossc.generate("poly_n", eps=[0.5, 0.25])
    lossc.generate("poly_n", eps=[0.5, 0.25])
    assert len(_entries(cache)) == 1
    lossc.generate("poly_n", eps=[0.5, 0.25, 0.125])  # N = 3: another program
    lossc.generate("poly_n", target="all", eps=[0.5, 0.25])
    assert len(_entries(cache)) == 3
    lossc.generate(lossc.source("poly_n") + "\n# edited\n", eps=[0.5, 0.25])
    assert len(_entries(cache)) == 4
    monkeypatch.setattr(api, "_MEMORY", {})
    monkeypatch.setattr(api, "code_digest", lambda: "another lossc")
    lossc.generate("poly_n", eps=[0.5, 0.25])
    assert len(_entries(cache)) == 5


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not an object", "edited source", "missing field",
                                    "binary"])
def test_a_bad_entry_is_ignored_and_rewritten(cache, monkeypatch, damage):
    source = lossc.generate("hinge")
    (entry,) = _entries(cache)
    text = entry.read_text()
    stored = json.loads(text)
    damaged = {
        "truncated": text[: len(text) // 2],
        "garbage": "{{{ not json",
        "not an object": "[1, 2, 3]",
        "edited source": json.dumps({**stored, "source": stored["source"] + "\nimport os\n"}),
        "missing field": json.dumps({k: v for k, v in stored.items() if k != "params"}),
        "binary": None,
    }[damage]
    if damaged is None:
        entry.write_bytes(b"\xff\xfe\x00\x01" * 64)
    else:
        entry.write_text(damaged)
    monkeypatch.setattr(api, "_MEMORY", {})
    assert lossc.generate("hinge") == source
    assert json.loads(entry.read_text()) == stored  # rewritten whole
    assert not list(cache.glob("*.tmp")) and not list(cache.glob(".*"))


def test_no_disk_cache_when_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("LOSSC_NO_CACHE", "1")
    monkeypatch.setattr(api, "_MEMORY", {})
    lossc.generate("mse")
    assert not (tmp_path / "compile").exists()


def test_an_unwritable_cache_is_no_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    monkeypatch.delenv("LOSSC_NO_CACHE", raising=False)
    monkeypatch.setenv("LOSSC_CACHE_DIR", str(blocker))
    monkeypatch.setattr(api, "_MEMORY", {})
    assert "class MseLoss" in lossc.generate("mse")


def test_errors_are_not_cached(cache):
    bad = "loss bad() over margin:\n    return m +\n"
    for _ in range(2):
        with pytest.raises(lossc.LossSyntaxError):
            lossc.generate(bad)
    assert not cache.exists() or not _entries(cache)


def test_code_digest_is_stable_and_hex():
    assert code_digest() == code_digest() and len(code_digest()) == 16
    int(code_digest(), 16)


_WORKER = textwrap.dedent("""
    import sys, torch, lossc
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 10, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 10, (64,), generator=g)
    value = lossc.loss("focal", gamma=1.5, backend="torch")(x, t)
    value.backward()
    print(value.item().hex(), x.grad.sum().item().hex(), x.grad.abs().sum().item().hex())
""")


def test_eight_processes_compile_one_loss_at_once(tmp_path):
    env = {**os.environ, "LOSSC_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("LOSSC_NO_CACHE", None)
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
    outputs = {out.strip() for out, _ in results}
    assert len(outputs) == 1, outputs
    (entry,) = _entries(tmp_path / "compile")
    assert api._valid_entry(json.loads(entry.read_text()))
    assert not [p for p in (tmp_path / "compile").iterdir() if p.suffix != ".json"]  # no temporary left
    # and a ninth process, reading the entry, gets the same numbers
    again = subprocess.run([sys.executable, "-c", _WORKER], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.strip() in outputs
