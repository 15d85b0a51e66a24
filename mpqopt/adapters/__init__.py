"""Adapters that build mpqopt problems from framework models and apply allocations back.

Each adapter is an optional extra (``pip install mpqopt[torch]``, ``mpqopt[onnx]``); importing
``mpqopt`` never imports a framework.
"""
