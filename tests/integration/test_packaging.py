"""The wheel holds the project's top-level names and its data, nothing else (docs/packaging.md)."""
from __future__ import annotations

import subprocess
import sys
import zipfile

from tests.conftest import ROOT

INSTALLED = {"cli.py", "pipeline", "models", "ensembles", "web"}


def test_the_wheel_holds_the_documented_names_the_weights_and_the_page(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, capture_output=True, cwd=tmp_path)
    [wheel] = tmp_path.glob("deepfake_verdict-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == INSTALLED
    for shipped in ("models/weights/ensemble.json", "models/weights/minivgg.pt", "models/weights/resnet18.pt",
                    "models/weights/MODEL_CARD.md", "web/static/index.html", "web/static/favicon.svg"):
        assert shipped in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "deepfake-verdict = cli:main" in entry_points
