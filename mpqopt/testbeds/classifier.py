"""Deprecated alias of :mod:`mpqopt.examples.classifier` (the same module object)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("mpqopt.examples.classifier")
