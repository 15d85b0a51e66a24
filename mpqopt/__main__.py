"""``python -m mpqopt``: the same command line as the ``mpqopt`` script."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
