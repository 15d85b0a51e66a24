"""Execute every notebook in notebooks/ in place, so the committed copies show current outputs.

Usage: .venv/bin/python scripts/run_notebooks.py   (or `make notebooks`)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    peers = ROOT.parent / "shared" / "peers"
    if peers.is_dir():  # the kernels run in a scratch folder: tell the peers notebook where the data is
        os.environ.setdefault("MPQOPT_PEERS", str(peers))
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        with tempfile.TemporaryDirectory() as scratch:  # files the notebooks write (ONNX exports) land here
            nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": scratch}}).execute()
        nbformat.write(notebook, path)
        print(f"executed {path.name}")


if __name__ == "__main__":
    main()
