"""A non-editable install finds its grammar, templates and catalog from any folder."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_ships_resources_and_works_from_another_folder(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(REPO)], check=True, capture_output=True)
    (wheel,) = wheels.glob("lossc-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "lossc/_data/grammar/lossc.lark" in names
    assert "lossc/_data/catalog/focal.loss" in names
    assert "lossc/_data/templates/module.py.j2" in names
    assert "lossc/_data/templates/triton_row.py.j2" in names and "lossc/triton_runtime.py" in names
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import lossc, torch; assert lossc.__file__.startswith(%r), lossc.__file__\n"
            "m = lossc.loss('focal'); z = torch.randn(3, 4); print(float(m(z, torch.tensor([0, 1, 2]))))\n"
            "print(len(lossc.catalog()))" % str(site))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    result = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) >= 25
