"""The allocation problem: layers, options, sensitivity, costs, budgets and structural constraints.

All input is validated here, once, at construction; everything downstream trusts a ``Problem``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from .budgets import budget_table, resolve_budgets, scope_mask
from .errors import FormatError, ProblemError
from .options import Option, OptionLike

# meta is free-form data that must survive a JSON round trip; beyond this depth it is a mistake or an
# attack (json and repr recurse once per level: 100,000 levels crash them with RecursionError)
MAX_META_DEPTH = 100
MAX_META_NODES = 10_000_000


@dataclass(frozen=True)
class Evaluation:
    """Objective and total costs of one full assignment."""

    objective: float
    costs: dict[str, float]


class Problem:
    """A mixed-precision allocation problem.

    ``sensitivity[l, o]`` is the loss increase when layer ``l`` takes option ``o``; every cost table
    ``costs[name][l, o]`` is what that choice costs (bits, BitOps, milliseconds...). A solution picks
    one option per layer, minimising total sensitivity (plus the pairwise term ``x^T Ω x`` when
    ``pairwise`` is given) subject to ``total cost <= budget`` for every budget.

    >>> p = Problem(["conv1", "fc"], [4, 8], [[0.3, 0.0], [0.1, 0.0]],
    ...             costs={"size_bits": [[400, 800], [1000, 2000]]}, budgets={"size_bits": 2200})
    >>> p.num_layers, p.num_options, p.budgets
    (2, 2, {'size_bits': 2200.0})

    Structural constraints: ``ties`` (groups of layer names that must take the same option),
    ``fixed`` (layer name -> option label), ``allowed`` (an ``[L, K]`` boolean mask). ``budgets`` keys
    may be scoped (``{"size_bits[stage0:blk.{0..15}.*]": 2e9}``, see :mod:`mpqopt.budgets`) or given
    as a list of :class:`mpqopt.Budget`.

    Layer facts (optional, one number per layer): ``params``, the layer's weight count (what
    bits-per-weight budgets divide by), and ``row_lengths``, the weights in one output row (input
    features). With row lengths, an option whose format stores rows in blocks or groups that do not
    divide a layer's row length (GGUF's Q4_K needs a multiple of 256) is taken out of that layer's
    ``allowed`` mask; :meth:`disallowed_reasons` says why, and ``given_allowed`` keeps the mask as given.

    >>> q = Problem(["attn", "mlp"], ["Q4_K", "Q8_0"], [[0.2, 0.0], [0.1, 0.0]], row_lengths=[576, 4096])
    >>> q.allowed.tolist(), q.disallowed_reasons()
    ([[False, True], [True, True]], {('attn', 'Q4_K'): "row length 576 is not divisible by Q4_K's 256-weight super-block"})
    """

    def __init__(
        self,
        layers: Sequence[str],
        options: Sequence[OptionLike],
        sensitivity: Any,
        costs: Mapping[str, Any] | None = None,
        budgets: Mapping[str, Any] | None = None,
        *,
        ties: Iterable[Sequence[str]] = (),
        fixed: Mapping[str, OptionLike] | None = None,
        allowed: Any = None,
        pairwise: Any = None,
        sensitivity_std: Any = None,
        cost_units: Mapping[str, str] | None = None,
        meta: Mapping[str, Any] | None = None,
        params: Any = None,
        row_lengths: Any = None,
    ):
        self.layers: tuple[str, ...]
        self.layers, self._layer_pos = _validate_layers(layers)
        self.options: tuple[Option, ...] = _validate_options(options)
        self._option_pos = {opt.label: k for k, opt in enumerate(self.options)}
        shape = (len(self.layers), len(self.options))

        self._objective_scale: float | None = None
        self._cost_ranges: dict[str, tuple[float, float]] = {}
        self.sensitivity = self._table("sensitivity", sensitivity, shape)
        self.sensitivity_std = None if sensitivity_std is None else self._table("sensitivity_std", sensitivity_std, shape, nonnegative=True)
        costs = {} if costs is None else costs
        if not isinstance(costs, Mapping):
            raise ProblemError("costs must be a mapping of cost name -> [layers x options] table")
        self.costs: dict[str, np.ndarray] = {}
        for name, table in costs.items():
            if not isinstance(name, str) or not name:
                raise ProblemError(f"cost names must be non-empty strings, got {name!r}")
            _check_encodable([name], "cost name", indexed=False)
            self.costs[name] = self._table(f"costs['{name}']", table, shape, nonnegative=True)
        self.cost_units: dict[str, str] = dict(cost_units or {})
        for name, unit in self.cost_units.items():
            if name not in self.costs:
                raise ProblemError(f"cost_units names unknown cost '{name}'; costs are {sorted(self.costs)}")
            if not isinstance(unit, str):
                raise ProblemError(f"cost_units['{name}'] must be a unit string such as 'bit' or 'ms', got {unit!r}")
            _check_encodable([unit], f"cost_units['{name}']: unit", indexed=False)

        self.params: np.ndarray | None = None if params is None else self._layer_vector("params", params)
        self.row_lengths: np.ndarray | None = None if row_lengths is None else self._layer_vector("row_lengths", row_lengths, integer=True)
        self.given_allowed = self._mask(allowed, shape)
        self.allowed = self._apply_format_rules(self.given_allowed)
        self.fixed: dict[str, str] = self._validate_fixed(fixed or {})
        self.pairwise = self._validate_pairwise(pairwise)
        self._check_totals_finite()
        self.meta: dict[str, Any] = check_meta({} if meta is None else meta)
        self._scope_masks: dict[tuple[str, ...], np.ndarray] = {}  # scoped budgets' layer masks, by patterns
        self.ties: tuple[tuple[str, ...], ...] = self._merge_ties(ties)
        self._build_groups()
        # after the groups: budgets need them to resolve '50%'
        self.budgets: dict[str, float] = resolve_budgets(self, budgets or {}) if budgets else {}

    # ------------------------------------------------------------------ sizes and lookups
    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def num_options(self) -> int:
        return len(self.options)

    @property
    def option_labels(self) -> tuple[str, ...]:
        return tuple(o.label for o in self.options)

    @property
    def is_separable(self) -> bool:
        """True when there is no pairwise (cross-layer) term."""
        return self.pairwise is None

    @property
    def objective_scale(self) -> float:
        """Magnitude of the terms an objective sums: ``sum_l max_o |sensitivity|`` plus ``sum |pairwise|``."""
        if self._objective_scale is None:  # the tables never change: computed once
            self._objective_scale = self._scale()
        return self._objective_scale

    def _scale(self) -> float:
        # max |s| of a row is max(max s, -min s): no |s| copy of the table
        scale = float(np.maximum(self.sensitivity.max(axis=1), -self.sensitivity.min(axis=1)).sum())
        if self.pairwise is not None:
            scale += float(abs(self.pairwise).sum())
        return scale

    def layer_index(self, name: str) -> int:
        try:
            return self._layer_pos[name]
        except (KeyError, TypeError):
            raise ProblemError(f"unknown layer {name!r}") from None

    def option_index(self, option: OptionLike) -> int:
        """Index of an option given by label, ``Option`` or int index."""
        if isinstance(option, (int, np.integer)) and not isinstance(option, bool):
            if 0 <= option < self.num_options:
                return int(option)
            raise ProblemError(f"option index {option} out of range 0..{self.num_options - 1}")
        label = option.label if isinstance(option, Option) else option
        try:
            return self._option_pos[label]
        except (KeyError, TypeError):
            raise ProblemError(f"unknown option {option!r}; options are {list(self.option_labels)}") from None

    # ------------------------------------------------------------------ evaluation
    def as_indices(self, assignment: Mapping[str, OptionLike] | Sequence[int] | np.ndarray) -> np.ndarray:
        """Turn ``{layer: label}`` or a sequence of option indices into an ``[L]`` index array."""
        if isinstance(assignment, Mapping):
            missing = [n for n in self.layers if n not in assignment]
            extra = [n for n in assignment if n not in self._layer_pos]
            if missing or extra:
                raise ProblemError(f"assignment must name every layer once: missing {missing[:5]}, unknown {extra[:5]}")
            return np.array([self.option_index(assignment[n]) for n in self.layers], dtype=np.int64)
        x = np.asarray(assignment)
        if x.shape != (self.num_layers,) or not np.issubdtype(x.dtype, np.integer):
            raise ProblemError(f"assignment must be {self.num_layers} option indices, got shape {x.shape} dtype {x.dtype}")
        if x.size and (x.min() < 0 or x.max() >= self.num_options):
            raise ProblemError("assignment has option indices out of range")
        return x.astype(np.int64)

    def evaluate(self, assignment: Mapping[str, OptionLike] | Sequence[int] | np.ndarray, budgets: Iterable[str] = ()) -> Evaluation:
        """Objective (sensitivity sum plus pairwise term) and total of every cost, and of every
        scoped budget key in ``budgets`` (``size_bits[stage0:blk.*]``: the total over its scope)."""
        x = self.as_indices(assignment)
        rows = np.arange(self.num_layers)
        objective = float(self.sensitivity[rows, x].sum())
        if self.pairwise is not None:
            flat = rows * self.num_options + x
            objective += float(self.pairwise[flat][:, flat].sum())
        costs = {name: float(table[rows, x].sum()) for name, table in self.costs.items()}
        for key in budgets:
            if key not in costs:
                costs[key] = float(self.budget_table(key)[rows, x].sum())
        return Evaluation(objective, costs)

    def to_labels(self, x: np.ndarray) -> dict[str, str]:
        """``{layer: option label}`` for an index array."""
        labels = self.option_labels
        return {name: labels[k] for name, k in zip(self.layers, x.tolist())}

    # ------------------------------------------------------------------ grouped view
    @property
    def num_groups(self) -> int:
        """Number of decisions: tied layers share one."""
        return int(self.group_first_layer.size)

    @property
    def group_members(self) -> tuple[np.ndarray, ...]:
        """Layer indices of each decision group (built on first use: a million one-layer arrays
        would cost more than the rest of validation)."""
        if self._group_members is None:
            order = np.argsort(self.layer_group, kind="stable")
            bounds = np.searchsorted(self.layer_group[order], np.arange(1, self.num_groups))
            self._group_members = tuple(np.split(order, bounds))
        return self._group_members

    def _member_names(self, g: int) -> list[str]:
        return [self.layers[i] for i in np.nonzero(self.layer_group == g)[0]]

    def group_table(self, table: np.ndarray) -> np.ndarray:
        """Sum a ``[L, K]`` table over the members of each group: ``[G, K]``."""
        if self._group_matrix is None:
            return table
        return np.asarray(self._group_matrix @ table)

    @property
    def group_candidates(self) -> np.ndarray:
        """``[G, K]`` options each decision group may take: the common mask, narrowed by fixed layers."""
        candidates = self.group_allowed.copy()
        fixed = self.group_fixed >= 0
        candidates[fixed] = False
        candidates[fixed, self.group_fixed[fixed]] = True
        return candidates

    def budget_table(self, key: str) -> np.ndarray:
        """The ``[L, K]`` table budget ``key`` sums: a cost table, or for a scoped key
        (``size_bits[stage0:blk.*]``) that table with zeros outside the scope."""
        return budget_table(self, key)

    def scope_mask(self, key: str) -> np.ndarray | None:
        """``[L]`` mask of the layers a scoped budget key sums; None for a plain cost name."""
        return scope_mask(self, key)

    def budget_total(self, key: str, assignment: Mapping[str, OptionLike] | Sequence[int] | np.ndarray) -> float:
        """Total of budget ``key`` (a cost name or a scoped key) at one assignment."""
        x = self.as_indices(assignment)
        return float(self.budget_table(key)[np.arange(self.num_layers), x].sum())

    def cost_range(self, name: str) -> tuple[float, float]:
        """Cheapest and dearest total of cost ``name`` (or of a scoped budget key, over its scope)
        over assignments allowed by ties, masks and fixed layers."""
        if name in self._cost_ranges:  # the problem never changes: computed once per key
            return self._cost_ranges[name]
        if name not in self.costs and scope_mask(self, name) is None:
            raise ProblemError(f"unknown cost {name!r}; costs are {sorted(self.costs)}")
        self._cost_ranges[name] = self._cost_range(name)
        return self._cost_ranges[name]

    def _cost_range(self, name: str) -> tuple[float, float]:
        table = self.group_table(self.budget_table(name))
        allowed = self.group_candidates
        if allowed.all():  # nothing masked: the table's own row extremes, without a masked copy of it
            return float(table.min(axis=1).sum()), float(table.max(axis=1).sum())
        lo = np.where(allowed, table, np.inf).min(axis=1).sum()
        hi = np.where(allowed, table, -np.inf).max(axis=1).sum()
        return float(lo), float(hi)

    def replace(self, **changes: Any) -> "Problem":
        """A copy with some constructor arguments changed, e.g. ``p.replace(budgets={...})``."""
        args: dict[str, Any] = dict(
            layers=self.layers, options=self.options, sensitivity=self.sensitivity, costs=self.costs,
            # the mask as given: the format rules apply again to the (new) row lengths
            budgets=self.budgets, ties=self.ties, fixed=self.fixed, allowed=self.given_allowed,
            pairwise=self.pairwise, sensitivity_std=self.sensitivity_std, cost_units=self.cost_units,
            meta=self.meta, params=self.params, row_lengths=self.row_lengths,
        )
        unknown = set(changes) - set(args)
        if unknown:
            raise TypeError(f"replace() got unknown arguments {sorted(unknown)}")
        args.update(changes)
        return Problem(**args)

    def __repr__(self) -> str:
        extras = [f"costs={sorted(self.costs)}", f"budgets={self.budgets}"]
        if self.ties:
            extras.append(f"ties={len(self.ties)}")
        if self.fixed:
            extras.append(f"fixed={len(self.fixed)}")
        if self.pairwise is not None:
            extras.append("pairwise")
        extras += [name for name in ("params", "row_lengths") if getattr(self, name) is not None]
        return f"Problem({self.num_layers} layers x {self.num_options} options, {', '.join(extras)})"

    # ------------------------------------------------------------------ validation helpers
    def _table(self, key: str, value: Any, shape: tuple[int, int], nonnegative: bool = False) -> np.ndarray:
        try:
            raw = np.asarray(value)
            kind = raw.dtype.kind
            if kind == "O":  # mixed or huge Python numbers: complex ones hide among them
                kind = "c" if any(isinstance(v, complex) for v in raw.ravel()) else "O"
            if kind == "c":  # float64 conversion would silently drop the imaginary part
                raise ProblemError(f"{key} holds complex numbers; the table must be real (take .real or abs() first if that is meant)")
            if kind in "USaV":  # float64 conversion would read '1' as 1.0
                raise ProblemError(f"{key} must be a numeric table of shape {shape} (layers x options), got text (dtype {raw.dtype})")
            # a table mpqopt froze itself (another Problem's, mckp_problem's) cannot change under us:
            # kept as it is, not copied. Anything else is copied: a user's read-only array can be made
            # writeable again (setflags) and changed after the Problem is built
            keep = raw is value and raw.dtype == np.float64 and is_frozen(raw)
            arr = raw if keep else np.array(raw, dtype=np.float64)
        except ProblemError:
            raise
        except OverflowError:
            raise ProblemError(f"{key} holds a number beyond float64's range (about 1.8e308)") from None
        except (TypeError, ValueError):
            raise ProblemError(f"{key} must be a numeric table of shape {shape} (layers x options)") from None
        if arr.shape != shape:
            raise ProblemError(f"{key} has shape {arr.shape}, expected {shape} ({shape[0]} layers x {shape[1]} options)")
        bad = ~np.isfinite(arr)
        if bad.any():
            l, o = map(int, np.argwhere(bad)[0])
            raise ProblemError(
                f"{key}: entry for layer '{self.layers[l]}', option '{self.options[o].label}' is {arr[l, o]} "
                f"({int(bad.sum())} non-finite entries); to forbid an option use the 'allowed' mask"
            )
        if nonnegative and (arr < 0).any():
            l, o = map(int, np.argwhere(arr < 0)[0])
            raise ProblemError(f"{key}: entry for layer '{self.layers[l]}', option '{self.options[o].label}' is negative ({arr[l, o]})")
        return freeze(arr)

    def _check_totals_finite(self) -> None:
        """Totals must stay finite: 1e308 per layer sums to inf, and an 'optimal' answer with cost inf and
        slack -inf would be nonsense. Checked on the largest total any assignment can reach."""
        with np.errstate(over="ignore", invalid="ignore"):
            every = bool(self.allowed.all())
            for name, table in self.costs.items():
                if not np.isfinite((table if every else np.where(self.allowed, table, 0.0)).max(axis=1).sum()):
                    raise ProblemError(f"costs['{name}']: the largest total ({self.num_layers} layers' dearest options) "
                                       f"overflows float64 (> 1.8e308); rescale the table, e.g. to another unit")
            if not np.isfinite(self.objective_scale):
                raise ProblemError("sensitivity" + (" and pairwise" if self.pairwise is not None else "") +
                                   ": the objective's largest total overflows float64 (> 1.8e308); rescale the sensitivities")

    def disallowed_reasons(self) -> dict[tuple[str, str], str]:
        """``{(layer, option label): why}`` for every option a layer's row length rules out (block or
        group size not dividing it); empty without ``row_lengths``."""
        bad = self._format_misfits()
        return {(self.layers[l], self.options[k].label): self._misfit_reason(l, k) for l, k in zip(*np.nonzero(bad))}

    def _misfit_reason(self, l: int, k: int) -> str:
        fmt = self.options[k].format
        assert fmt is not None and self.row_lengths is not None
        return fmt.fits(int(self.row_lengths[l])) or ""

    def _format_misfits(self) -> np.ndarray:
        """``[L, K]``: True where the option's format cannot store the layer's rows (vectorized per option)."""
        bad = np.zeros((self.num_layers, self.num_options), dtype=bool)
        if self.row_lengths is None:
            return bad
        for k, option in enumerate(self.options):
            group = None if option.format is None else option.format.group_size
            if group is not None and group > 1:
                bad[:, k] = self.row_lengths % group != 0
        return bad

    def _apply_format_rules(self, given: np.ndarray) -> np.ndarray:
        bad = self._format_misfits()
        if not bad.any():
            return given
        mask = given & ~bad
        empty = ~mask.any(axis=1)
        if empty.any():
            l = int(np.argmax(empty))
            reasons = "; ".join(f"{self.options[k].label}: {self._misfit_reason(l, k)}" for k in np.nonzero(given[l] & bad[l])[0])
            raise ProblemError(f"layer '{self.layers[l]}' has no allowed option: its row length rules out the rest ({reasons})")
        mask.setflags(write=False)
        return mask

    def _layer_vector(self, key: str, value: Any, integer: bool = False) -> np.ndarray:
        """One real number per layer (``params``) or one positive integer (``row_lengths``), read-only float64 / int64."""
        what = "a positive integer per layer (weights per output row)" if integer else "a finite number >= 0 per layer (weight count)"
        try:
            raw = np.asarray(value)
            if raw.dtype.kind not in "iuf":
                raise ProblemError(f"{key} must be {what}, got {'text' if raw.dtype.kind in 'USaV' else 'dtype ' + str(raw.dtype)}")
            arr = raw.astype(np.float64)
        except ProblemError:
            raise
        except (TypeError, ValueError, OverflowError):
            raise ProblemError(f"{key} must be {what}") from None
        if arr.shape != (self.num_layers,):
            raise ProblemError(f"{key} has shape {arr.shape}, expected ({self.num_layers},): {what}")
        bad = ~np.isfinite(arr) | (arr < 0)
        if integer:
            with np.errstate(invalid="ignore"):
                bad |= (arr < 1) | (arr != np.floor(arr)) | (arr > 2**53)
        if bad.any():
            l = int(np.argmax(bad))
            raise ProblemError(f"{key}: layer '{self.layers[l]}' has {raw[l].item()!r}; {key} must be {what}")
        out = arr.astype(np.int64) if integer else arr
        out.setflags(write=False)
        return out

    def _mask(self, allowed: Any, shape: tuple[int, int]) -> np.ndarray:
        if allowed is None:
            mask = np.ones(shape, dtype=bool)
        else:
            raw = np.asarray(allowed)
            if raw.shape != shape:
                raise ProblemError(f"allowed has shape {raw.shape}, expected {shape} (layers x options)")
            if raw.dtype != bool and not (np.issubdtype(raw.dtype, np.integer) and np.isin(raw, (0, 1)).all()):
                raise ProblemError("allowed must be a boolean [layers x options] mask")
            mask = raw.astype(bool)
        empty = ~mask.any(axis=1)
        if empty.any():
            raise ProblemError(f"layer '{self.layers[int(np.argmax(empty))]}' has no allowed option")
        mask.setflags(write=False)
        return mask

    def _validate_fixed(self, fixed: Mapping[str, OptionLike]) -> dict[str, str]:
        if not isinstance(fixed, Mapping):
            raise ProblemError("fixed must be a mapping of layer name -> option label")
        out = {}
        for name, option in fixed.items():
            if name not in self._layer_pos:
                raise ProblemError(f"fixed names unknown layer {name!r}")
            try:
                k = self.option_index(option)
            except ProblemError as exc:
                raise ProblemError(f"layer '{name}' is fixed to an {exc}") from None
            l = self._layer_pos[name]
            if not self.given_allowed[l, k]:
                raise ProblemError(f"layer '{name}' is fixed to option '{self.options[k].label}', which its allowed mask forbids")
            if not self.allowed[l, k]:
                raise ProblemError(f"layer '{name}' is fixed to option '{self.options[k].label}', which its row length rules out: {self._misfit_reason(l, k)}")
            out[name] = self.options[k].label
        return out

    def _validate_pairwise(self, pairwise: Any) -> Any:
        if pairwise is None:
            return None
        n = self.num_layers * self.num_options
        if sp.issparse(pairwise):
            mat = sp.csr_array(pairwise, dtype=np.float64, copy=True)  # a caller's later write must not reach us
            values = mat.data
        else:
            try:
                mat = np.array(pairwise, dtype=np.float64)
            except (TypeError, ValueError):
                raise ProblemError(f"pairwise must be a numeric ({n} x {n}) matrix") from None
            values = mat
        if mat.shape != (n, n):
            raise ProblemError(f"pairwise has shape {mat.shape}, expected ({n}, {n}) = (layers*options)^2, index l*K + o")
        if not np.isfinite(values).all():
            raise ProblemError(self._pairwise_fault(mat))
        if isinstance(mat, np.ndarray):
            mat.setflags(write=False)
        return mat

    def _pairwise_fault(self, mat: Any) -> str:
        """Where the first non-finite pairwise entry is: row, column and their (layer, option) pairs."""
        if sp.issparse(mat):
            coo = sp.coo_array(mat)
            bad = np.flatnonzero(~np.isfinite(coo.data))
            i, j, value, count = int(coo.row[bad[0]]), int(coo.col[bad[0]]), coo.data[bad[0]], bad.size
        else:
            where = np.argwhere(~np.isfinite(mat))
            (i, j), count = map(int, where[0]), len(where)
            value = mat[i, j]
        K = self.num_options

        def pair(n: int) -> str:
            return f"(layer '{self.layers[n // K]}', option '{self.options[n % K].label}')"

        return (f"pairwise has non-finite entries ({count}); the first, pairwise[{i}, {j}], is {value}: "
                f"row {i} is {pair(i)}, column {j} is {pair(j)}")

    def _merge_ties(self, ties: Iterable[Sequence[str]]) -> tuple[tuple[str, ...], ...]:
        """Union overlapping tie groups; every layer name must exist."""
        parent = list(range(self.num_layers))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        touched = set()
        for g, group in enumerate(ties):
            if isinstance(group, str) or not isinstance(group, Iterable):
                raise ProblemError(f"tie group {g} must be a list of layer names, got {group!r}")
            names = list(group)
            for name in names:
                if name not in self._layer_pos:
                    raise ProblemError(f"tie group {g} names unknown layer {name!r}")
            idx = [self._layer_pos[n] for n in names]
            touched.update(idx)
            for i in idx[1:]:
                parent[find(i)] = find(idx[0])
        merged: dict[int, list[int]] = {}
        for i in sorted(touched):
            merged.setdefault(find(i), []).append(i)
        return tuple(tuple(self.layers[i] for i in members) for members in merged.values() if len(members) > 1)

    def _build_groups(self) -> None:
        """One decision per tie group (or single layer), with its common mask and fixed option."""
        L = self.num_layers
        group_of = np.arange(L)
        for members in self.ties:
            idx = [self._layer_pos[n] for n in members]
            group_of[idx] = min(idx)
        if self.ties:
            # renumber groups by first member, so an untied problem keeps layer order
            _, first, inverse = np.unique(group_of, return_index=True, return_inverse=True)
            order = np.argsort(first, kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(order.size)
            self.layer_group = rank[inverse]
            G = order.size
            self.group_first_layer = np.sort(first)
        else:  # every layer its own group, in layer order (np.unique's sort took ~0.3 s at 1,000,000 layers)
            G = L
            self.layer_group, self.group_first_layer = group_of, np.arange(L)
        self._group_members: tuple[np.ndarray, ...] | None = None
        if G == L:
            self._group_matrix = None
            group_allowed = self.allowed
        else:
            self._group_matrix = sp.csr_array((np.ones(L), (self.layer_group, np.arange(L))), shape=(G, L))
            group_allowed = (self._group_matrix @ (~self.allowed).astype(np.float64)) == 0
            empty = ~group_allowed.any(axis=1)
            if empty.any():
                raise ProblemError(f"tied layers {self._member_names(int(np.argmax(empty)))} have no allowed option in common")
        group_fixed = np.full(G, -1, dtype=np.int64)
        for name, label in self.fixed.items():
            g, k = self.layer_group[self._layer_pos[name]], self._option_pos[label]
            if group_fixed[g] not in (-1, k):
                names = self._member_names(g)
                raise ProblemError(f"tied layers {names} are fixed to different options ('{self.options[group_fixed[g]].label}' and '{label}')")
            if not group_allowed[g, k]:
                names = self._member_names(g)
                raise ProblemError(f"layer '{name}' is fixed to '{label}', which is not allowed for every layer tied to it {names}")
            group_fixed[g] = k
        self.group_allowed = np.asarray(group_allowed)
        self.group_allowed.setflags(write=False)
        self.group_fixed = group_fixed
        self.group_fixed.setflags(write=False)


_FROZEN: dict[int, weakref.ref] = {}  # id -> the array, for the tables mpqopt made read-only itself


def freeze(table: np.ndarray) -> np.ndarray:
    """Make ``table``, an array mpqopt made and owns (no other array's view), read-only, and mark it
    as one a :class:`Problem` may keep without a copy and checks may remember facts about.

    >>> t = freeze(np.zeros((2, 2))); t.flags.writeable, is_frozen(t), is_frozen(np.zeros(1))
    (False, True, False)
    """
    if table.base is None and not is_frozen(table):
        key = id(table)
        _FROZEN[key] = weakref.ref(table, lambda _, key=key: _FROZEN.pop(key, None))
    table.setflags(write=False)
    return table


def is_frozen(table: np.ndarray) -> bool:
    """Whether ``table`` was frozen by :func:`freeze` and is read-only still."""
    ref = _FROZEN.get(id(table))
    return ref is not None and ref() is table and not table.flags.writeable


def check_meta(meta: Any, where: str = "$.meta", source: str | None = None) -> dict[str, Any]:
    """``meta`` as a dict, refused (``FormatError``) if it is not a mapping or nests deeper than ``MAX_META_DEPTH``.

    The walk is iterative, so a 100,000-level structure is refused rather than crashing the check itself.

    >>> deep = {}
    >>> node = deep
    >>> for _ in range(200):
    ...     node["x"] = node = {}
    >>> check_meta(deep)
    Traceback (most recent call last):
    ...
    mpqopt.errors.FormatError: $.meta: nested deeper than 100 levels (at $.meta.x.x.x...); keep meta shallow
    """
    if not isinstance(meta, Mapping):
        raise FormatError(f"meta must be a mapping (a dict of free-form data), got {type(meta).__name__}", where, source)
    stack: list[tuple[Any, int]] = [(meta, 1)]
    visited = 0
    while stack:
        node, depth = stack.pop()
        # a structure that contains itself is infinitely deep, so this also refuses reference cycles
        if depth > MAX_META_DEPTH:
            raise FormatError(f"nested deeper than {MAX_META_DEPTH} levels (at {where}.x.x.x...); keep meta shallow", where, source)
        if isinstance(node, Mapping):
            children = list(node.values())
        elif isinstance(node, (list, tuple)):
            children = list(node)
        else:
            continue
        visited += len(children)
        if visited > MAX_META_NODES:  # shared sub-lists can make a shallow structure exponentially large
            raise FormatError(f"holds more than {MAX_META_NODES:,} values; keep meta small (tables belong in costs)", where, source)
        stack.extend((child, depth + 1) for child in children)
    return dict(meta)


def _check_encodable(names: Sequence[str], what: str, indexed: bool = True) -> None:
    """Names must be UTF-8 text: a lone surrogate ('\\ud800') cannot be printed, written to a terminal or a zip."""
    try:
        "".join(names).encode("utf-8")
    except UnicodeEncodeError:
        for i, name in enumerate(names):
            try:
                name.encode("utf-8")
            except UnicodeEncodeError as exc:
                where = f"{what} {i}: name" if indexed else what
                raise ProblemError(f"{where} {name!r} holds a lone surrogate at character {exc.start}, "
                                   f"which is not valid Unicode text (no UTF-8 encoding); names must be printable text") from None


def _validate_layers(layers: Sequence[str]) -> tuple[tuple[str, ...], dict[str, int]]:
    """The layer names, checked, and each name's position."""
    if isinstance(layers, str) or not isinstance(layers, Iterable):
        raise ProblemError("layers must be a list of layer names")
    names = tuple(layers)
    if not names:
        raise ProblemError("a problem needs at least one layer")
    # fast path (C loops: a million names in ~0.1 s); the loop below names the culprit
    if set(map(type, names)) != {str} or "" in names:
        for i, name in enumerate(names):
            if not isinstance(name, str) or not name:
                raise ProblemError(f"layer {i}: name must be a non-empty string, got {name!r}")
    _check_encodable(names, "layer")
    position = dict(zip(names, range(len(names))))
    if len(position) != len(names):
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ProblemError(f"duplicate layer name {name!r}")
            seen.add(name)
    return names, position


def _validate_options(options: Sequence[OptionLike]) -> tuple[Option, ...]:
    if isinstance(options, (str, bytes)) or not isinstance(options, Iterable):
        raise ProblemError("options must be a list of options (ints, dicts, labels or Option)")
    parsed = tuple(Option.parse(o) for o in options)
    if not parsed:
        raise ProblemError("a problem needs at least one option")
    labels = [o.label for o in parsed]
    _check_encodable(labels, "option")
    dupes = sorted({lbl for lbl in labels if labels.count(lbl) > 1})
    if dupes:
        raise ProblemError(f"duplicate option labels {dupes}")
    return parsed
