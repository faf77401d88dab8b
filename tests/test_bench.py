"""``lossc bench``: the CLI end to end on a tiny shape, failures reported, bad input refused."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lossc import bench
from lossc.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_cli_end_to_end_json():
    proc = subprocess.run([sys.executable, "-m", "lossc.cli", "bench", "mse", "--shape", "4096", "--repeats", "1",
                           "--backend", "torch", "--json"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["loss"] == "mse" and data["kind"] == "regression" and data["shape"] == [4096]
    assert data["input_bytes"] == 4096 * 4 and data["roofline_bytes"] == 3 * 4096 * 4  # yhat, y read; grad written
    rows = {r["variant"]: r for r in data["results"]}
    assert list(rows) == ["torch", "eager", "compile"]
    assert rows["torch"]["status"] == "ok" and rows["eager"]["status"] == "ok"
    assert rows["torch"]["x_fused"] == 1.0 and len(rows["torch"]["times_ms"]) == 1
    assert rows["torch"]["loss_value"] == pytest.approx(rows["eager"]["loss_value"], rel=1e-5)
    assert data["bandwidth_gbps"] > 0 and rows["eager"]["x_roofline"] > 0


def test_inplace_variant(capsys):
    """--inplace adds the torch engine with inplace_grad=True; it computes the same loss."""
    assert main(["bench", "focal", "--shape", "64,9", "--repeats", "1", "--backend", "torch", "--inplace",
                 "--json"]) == 0
    rows = {r["variant"]: r for r in json.loads(capsys.readouterr().out)["results"]}
    assert list(rows) == ["torch", "torch-inplace", "eager", "compile"]
    assert rows["torch-inplace"]["status"] == "ok"
    assert rows["torch-inplace"]["loss_value"] == pytest.approx(rows["torch"]["loss_value"], rel=1e-6)


def test_compile_failure_is_reported_not_a_crash(monkeypatch, capsys):
    def broken_compile(fn, *args, **kwargs):
        def call(*a, **k):
            raise RuntimeError("inductor exploded")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    assert main(["bench", "cross_entropy", "--shape", "8,5", "--repeats", "1", "--backend", "torch", "--json"]) == 0
    rows = {r["variant"]: r for r in json.loads(capsys.readouterr().out)["results"]}
    assert rows["compile"]["status"] == "failed" and "inductor exploded" in rows["compile"]["error"]
    assert rows["torch"]["status"] == "ok" and rows["eager"]["status"] == "ok"
    assert rows["eager"]["x_fused"] > 0


def test_table_shows_failures(monkeypatch, capsys):
    monkeypatch.setattr(torch, "compile", lambda fn, *a, **k: (_ for _ in ()).throw(RuntimeError("no compiler")))
    assert main(["bench", "kl_div", "--shape", "8,5", "--repeats", "1", "--backend", "torch"]) == 0
    out = capsys.readouterr().out
    assert "failed" in out and "compile failed: RuntimeError: no compiler" in out and "roofline" in out


@pytest.mark.parametrize("args, message", [
    (["focl"], "did you mean focal?"),
    (["focal", "--shape", "4096"], "N,C"),
    (["focal", "--shape", "8,0,4"], "positive"),
    (["mse", "--shape", "4,4"], "is N"),
    (["mse", "--shape", "many"], "integers"),
    (["mse", "--repeats", "0"], "at least 1"),
    (["uncertainty_weighting"], "tasks loss"),
    (["anyloss_f1", "--inplace"], "row and elementwise"),
    (["focal", "--param", "gamma=-1"], "gamma"),
])
def test_bad_input_exits_2(capsys, args, message):
    assert main(["bench", *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the triton backend runs")
def test_triton_without_a_gpu_is_a_loss_error(capsys):
    assert main(["bench", "focal", "--shape", "8,5", "--backend", "triton"]) == 2
    assert "CUDA" in capsys.readouterr().err


def test_every_kind_with_tensors_has_inputs_and_tasks_is_refused():
    from lossc.kinds import KINDS
    assert {name for name, kind in KINDS.items() if kind.example is not None} == set(KINDS) - {"tasks"}


def test_rss_peak_counts_a_temporary():
    def step():
        x = torch.ones(16 * 1024 * 1024 // 4)  # 16 MiB, freed at once
        return float(x[0])

    extra, method = bench.rss_peak_extra_bytes(step)
    if extra is None:
        pytest.skip(method)
    assert 15 * bench.MB <= extra < 40 * bench.MB, method


def test_reference_backend_compares_with_eager(capsys):
    assert main(["bench", "hinge", "--shape", "1000", "--repeats", "1", "--backend", "reference", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fused"] == "eager" and [r["variant"] for r in data["results"]] == ["eager", "compile"]
    assert data["results"][0]["x_fused"] == 1.0


@pytest.mark.parametrize("name", ["focal", "kl_div"])
def test_a_segmentation_map_shape(name, monkeypatch, capsys):
    """--shape N,C,H,W times a row loss on [N, C, H, W] logits (and [N, H, W] classes or [N, C, H, W]
    probabilities); every variant gets them as they are."""
    monkeypatch.setattr(torch, "compile", lambda fn, *a, **k: fn)  # (no inductor on a tiny map)
    assert main(["bench", name, "--shape", "2,5,6,7", "--repeats", "1", "--backend", "torch", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["shape"] == [2, 5, 6, 7]
    rows = {r["variant"]: r for r in data["results"]}
    assert rows["torch"]["status"] == rows["eager"]["status"] == "ok"
