"""Real small models and data for tests, benchmarks and notebooks (need the ``torch`` extra).

``digits`` (sklearn's 8x8 digits, a CNN trained in seconds), ``fashion`` (Fashion-MNIST, a CNN trained in a
minute), ``minilm`` (all-MiniLM-L6-v2 on CPython's reference prose); ``classifier`` is what the CNN beds share.
"""
