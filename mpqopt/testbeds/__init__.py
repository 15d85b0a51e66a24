"""Real small models and data for tests, benchmarks and notebooks (need the ``torch`` extra).

See ``digits`` (sklearn's 8x8 digits and a CNN trained in seconds).
"""
