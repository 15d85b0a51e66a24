"""Deprecated: renamed :mod:`mpqopt.examples` (``pip install mpqopt[examples]``). ``mpqopt.testbeds`` and its
modules (``digits``, ``fashion``, ``minilm``, ``classifier``) are the ``mpqopt.examples`` ones, and importing
this package warns; it will be removed in the next release.
"""

import warnings

warnings.warn("mpqopt.testbeds is deprecated: use mpqopt.examples (same modules)", DeprecationWarning, stacklevel=2)
