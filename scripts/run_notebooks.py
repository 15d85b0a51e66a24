"""Execute every notebook in notebooks/ in place, so the committed copies show current outputs.

Usage: .venv/bin/python scripts/run_notebooks.py   (or `make notebooks`)
"""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat


def main() -> None:
    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3").execute()
        nbformat.write(notebook, path)
        print(f"executed {path.name}")


if __name__ == "__main__":
    main()
