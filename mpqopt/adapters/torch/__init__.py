"""PyTorch adapter: from an ``nn.Module`` and a little data to a :class:`~mpqopt.Problem`, and an
allocation back to a fake-quantized model (``pip install mpqopt[torch]``).

>>> import torch; from torch import nn
>>> import mpqopt
>>> from mpqopt.adapters.torch import estimate_delta_loss, problem_from_model, apply
>>> model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
>>> data = [(torch.randn(32, 8), torch.randint(0, 4, (32,)))]
>>> table = estimate_delta_loss(model, data, [2, 4, 8])
>>> problem = problem_from_model(model, data[0], None, table, costs=("size_bits",), budgets={"size_bits": "50%"})
>>> result = mpqopt.solve(problem)
>>> quantized_model = apply(model, result)
>>> result.status
'optimal'

Estimators (each returns a :class:`~mpqopt.adapters.sensitivity.Sensitivity`): ``estimate_delta_loss``,
``estimate_hessian_trace`` (HAWQ-V2/V3), ``estimate_fisher`` (MPQCO), ``estimate_pairwise`` (CLADO),
``estimate_entropy`` (EAGL, data-free), ``estimate_finetune_gain`` (ALPS), ``estimate_lsq_indicators``
(LIMPQ); ``train_csq`` (CSQ) returns an allocation; ``exhaustive_losses`` is ground truth for small models.

Causal LMs (transformers Llama-style models): ``discover_llm_layers`` / ``llm_problem`` (every block
Linear, the embedding and head as decisions, bpw budgets), ``estimate_imatrix`` (activation
statistics), ``estimate_kl_blocks`` (next-token KL, cached block inputs), ``estimate_gradient_score``
(AutoQuantize-style), ``perplexity`` on held-out text (``token_batches``, ``split_tokens``), and
``write_gguf`` (a GGUF file with per-tensor types; ``load_gguf_model`` reads one back). Options may be named formats (``"Q4_0"``,
``"int4-g128-asym"``, ...): see :mod:`mpqopt.adapters.torch.formats` for which ones apply.
Their shared arguments (``data`` batches, ``options``, ``layers=``/``include=``/``exclude=``, ``loss=``,
``output_fn=``, ``scheme=`` a :class:`WeightScheme`) are documented in :mod:`mpqopt.adapters.torch.estimators`.
"""

from ..sensitivity import Sensitivity
from .apply import QuantReport, Reliability, apply, evaluate, measurer, report
from .build import problem_from_model
from .costs import LayerCost, latency_table, measure_layers
from .data import Evaluator
from .estimators.csq_train import CsqResult, train_csq
from .estimators.delta_loss import estimate_delta_loss
from .estimators.entropy import estimate_entropy
from .estimators.exhaustive import GroundTruth, exhaustive_losses
from .estimators.finetune import estimate_finetune_gain
from .estimators.fisher import estimate_fisher
from .estimators.gradient_score import estimate_gradient_score
from .estimators.hessian import estimate_hessian_trace
from .estimators.imatrix import activation_stats, estimate_imatrix, imatrix_sensitivity
from .estimators.kl_blocks import estimate_kl_blocks
from .estimators.lsq import estimate_lsq_indicators
from .estimators.pairwise import estimate_pairwise
from .formats import quantize_to_format
from .gguf_model import load_gguf_model
from .gguf_writer import write_gguf
from .graph import ModelGraph, Ties, find_ties
from .layers import LayerInfo, discover_layers
from .llm import LlmLayers, discover_llm_layers, llm_problem
from .perturb import WeightCache, calibrate_activations, quantized
from .quantizer import WeightScheme, quantize_weight
from .text import perplexity, pydoc_text, split_tokens, token_batches

__all__ = [
    "CsqResult", "Evaluator", "GroundTruth", "LayerCost", "LayerInfo", "ModelGraph", "QuantReport", "Reliability", "Sensitivity", "Ties", "WeightCache",
    "WeightScheme", "apply", "calibrate_activations", "discover_layers", "estimate_delta_loss", "estimate_entropy", "estimate_finetune_gain",
    "estimate_fisher", "estimate_hessian_trace", "estimate_lsq_indicators", "estimate_pairwise", "evaluate", "exhaustive_losses",
    "find_ties", "latency_table", "measure_layers", "measurer", "problem_from_model", "quantize_weight", "quantized", "report", "train_csq",
    # causal LMs
    "LlmLayers", "activation_stats", "discover_llm_layers", "estimate_gradient_score", "estimate_imatrix", "estimate_kl_blocks",
    "imatrix_sensitivity", "llm_problem", "load_gguf_model", "perplexity", "pydoc_text", "quantize_to_format", "split_tokens", "token_batches", "write_gguf",
]
