"""Adapters that build mpqopt problems from framework models and apply allocations back.

Each adapter is an optional extra (``pip install mpqopt[torch]``, ``mpqopt[onnx]``); importing
``mpqopt`` never imports a framework. What both adapters share is framework-free and lives here:
:mod:`.sensitivity` (the table estimators return, its checks and statistics), :mod:`.scheme`
(weight schemes and the quantization grid), :mod:`.choices` (option lists, allocations, identity
options), :mod:`.pairs` (CLADO pair filters and tables), :mod:`.losses` (the loss choice),
:mod:`.entropy` (EAGL's table), :mod:`.tables` (layer costs and cost tables), :mod:`.patterns`
(layer-name patterns), :mod:`.ties` (tie groups) and :mod:`.build` (assembling the problem).
"""
