"""The PyTorch adapter's sensitivity estimators, and the arguments they share.

Import them from :mod:`mpqopt.adapters.torch`: ``estimate_delta_loss``, ``estimate_hessian_trace``,
``estimate_fisher``, ``estimate_pairwise``, ``estimate_entropy``, ``estimate_finetune_gain``,
``estimate_lsq_indicators`` (each returns a :class:`~mpqopt.adapters.sensitivity.Sensitivity`),
``train_csq`` (returns an allocation) and ``exhaustive_losses`` (ground truth). Each module's
docstring gives its method; this one gives what they all take.

Every estimator is called ``estimator(model, data, options, **keywords)``:

* ``model``: a ``torch.nn.Module``. It is put in eval mode; estimators that train (``finetune``,
  ``lsq``, ``csq``) work on a copy. The FP32 reference outputs are the unquantized model's,
  computed once from ``data``.
* ``data``: an iterable of batches, read once into a list. A batch is a tensor (inputs only), an
  ``(inputs, targets)`` tuple (``inputs`` a tensor or a tuple of positional tensors), or a dict of
  keyword inputs (a tokenizer's output) with optional ``"labels"``. A table's ``std`` is the
  standard error across batches where the method has one (None with one batch). See
  :mod:`mpqopt.adapters.torch.data`.
* ``options``: a non-empty list of options: weight bit-widths (``[2, 4, 8]``), labels such as
  ``"W4"`` or ``"W4A8"`` (with an activation width: that layer's input is fake-quantized too, on a
  per-tensor range calibrated on ``data``) or :class:`~mpqopt.Option` objects. Options at 32 bits or
  more are full precision: their entries are exactly 0 and cost no pass.

and these keywords (``estimate_entropy``, being data-free, takes no ``data`` and only ``layers``,
``include``, ``exclude`` and ``scheme``):

* ``layers=None``: exact layer names (module names, as
  :func:`~mpqopt.adapters.torch.discover_layers` gives them), in the order the table's rows take;
  an unknown name is an error. It wins over ``include``/``exclude``.
* ``include=None``, ``exclude=None``: layer-name patterns (shell globs matched against the whole
  name, such as ``"encoder.*"``, or ``"re:<regex>"`` searched anywhere in it; one pattern or a
  list) selecting among the quantizable
  layers (Conv1d/2d/3d and Linear), in module order.
* ``loss="auto"``: what a batch's loss is: ``"ce"`` (cross-entropy to the targets), ``"kl"``
  (KL(FP32 ‖ quantized) of the softmax outputs: unlabelled classifiers), ``"mse"`` or ``"cosine"``
  (1 − cosine, against the FP32 output: embeddings), or a callable
  ``loss(output, reference, target) -> scalar tensor``; ``"auto"`` is ``"ce"`` when the batches carry
  targets, else ``"kl"``.
* ``output_fn=None``: turns the model's output into the tensor that is scored (default: the output
  itself, its ``.logits`` or its ``.last_hidden_state``).
* ``scheme=WeightScheme()``: how weights are fake-quantized, a
  :class:`~mpqopt.adapters.torch.WeightScheme`: ``symmetric`` (True) or asymmetric, ``per_channel``
  (True: one scale per output channel) or per tensor, ``scale`` from the ``"minmax"`` range or by
  ``"mse"`` search over clipping ratios. The same scheme should be given to
  :func:`~mpqopt.adapters.torch.apply`.

Every :class:`~mpqopt.adapters.sensitivity.Sensitivity` records in ``meta`` at least ``seconds``,
``forward_passes`` and ``backward_passes``, and the measured ones ``loss`` and ``batches``.

>>> import torch
>>> from torch import nn
>>> from mpqopt.adapters.torch import WeightScheme, estimate_delta_loss
>>> _ = torch.manual_seed(0)
>>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
>>> s = estimate_delta_loss(model, [torch.randn(16, 4)], [2, "W4", 8], layers=["2"], loss="kl", scheme=WeightScheme(per_channel=False))
>>> s.layers, [o.label for o in s.options], s.meta["loss"], s.meta["batches"]
(('2',), ['W2', 'W4', 'W8'], 'kl', 1)
"""
