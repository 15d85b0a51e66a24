"""Every notebook in notebooks/ runs top to bottom, within CI's 3-minute limit, and shows a plot."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # over ~5 s: `make test-fast` (pytest -m "not slow") leaves it out

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(path, as_version=4)
    peers = Path(__file__).resolve().parents[3] / "shared" / "peers"
    if peers.is_dir():  # the kernel runs in tmp_path: tell the peers notebook where the data is
        monkeypatch.setenv("MPQOPT_PEERS", str(peers))
    nbclient.NotebookClient(notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    if peers.is_dir() or not path.name.startswith("04"):  # without the peer data, 04 stops before its plot
        assert images, f"{path.name} shows no plot"
    if path.name.startswith("04") and peers.is_dir():  # it reproduced the peers rather than stopping
        text = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
        assert "identical to the published policy: True" in text and "WORSE" not in text and text.count("same") >= 17
