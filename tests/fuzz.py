"""How many examples a property test draws.

``make test`` runs every property with its own count, derandomized (the same examples on every run
and machine) and with no example database; ``make fuzz`` (``MPQOPT_HYPOTHESIS=fuzz``) draws fresh
random examples, ``FUZZ_FACTOR`` times as many. A counterexample fuzzing finds is pinned to its test
with ``@example`` so that ``make test`` replays it from then on.
"""

import os

PROFILE = os.environ.get("MPQOPT_HYPOTHESIS", "deterministic")
FUZZ_FACTOR = 20


def examples(count: int) -> int:
    """``count`` in ``make test``; ``FUZZ_FACTOR`` times it under ``make fuzz``."""
    return count * FUZZ_FACTOR if PROFILE == "fuzz" else count
