"""Tie groups from a dataflow graph (framework-free: shared by the torch and ONNX adapters).

Layers that read the same input tensor share one activation quantizer, so they must take the same
bit-width. An adapter builds a :class:`ModelGraph` (a ``networkx.DiGraph`` and, per layer, the
tensor(s) it reads); :func:`resolve_ties` turns the user's ``ties=`` spec into :class:`Ties`.

>>> import networkx as nx
>>> g = ModelGraph(nx.DiGraph(), {"q": ("h",), "k": ("h",), "v": ("h",), "out": ("ctx",)}, "demo")
>>> same_input_groups(g)
(('q', 'k', 'v'),)
>>> resolve_ties("auto", list(g.inputs), lambda: g, exclude="v").groups
(('q', 'k'),)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence, Union

import networkx as nx

from ..errors import ProblemError
from .patterns import matches, patterns


@dataclass
class ModelGraph:
    """A model's dataflow as a ``networkx.DiGraph`` and the input of each quantizable layer.

    ``inputs[layer]`` lists the tensor(s) the layer reads (several when it runs more than once),
    after walking back through value-preserving ops. ``method`` says how the graph was built
    (``fx``, ``hooks``, ``onnx``); ``reason`` why a fallback was used.
    """

    graph: nx.DiGraph
    inputs: dict[str, tuple[str, ...]]
    method: str
    reason: str = ""

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.inputs)


@dataclass(frozen=True)
class Ties:
    """Tie groups for a problem and how they were found (``method``: the graph's method, ``user``,
    ``callable:<graph method>`` or ``none``; ``reason`` explains a fallback)."""

    groups: tuple[tuple[str, ...], ...]
    method: str
    reason: str = ""
    graph: ModelGraph | None = field(default=None, repr=False, compare=False)


TieSpec = Union[str, None, Sequence[Sequence[str]], Callable[[ModelGraph], Iterable[Sequence[str]]]]


def same_input_groups(graph: ModelGraph) -> tuple[tuple[str, ...], ...]:
    """Groups of layers that read the same input (connected through shared inputs), in layer order."""
    b = nx.Graph()
    for name, sources in graph.inputs.items():
        b.add_node(("layer", name))
        for src in sources:
            b.add_edge(("layer", name), ("input", src))
    order = {name: i for i, name in enumerate(graph.inputs)}
    groups = []
    for comp in nx.connected_components(b):
        names = sorted((n for kind, n in comp if kind == "layer"), key=order.__getitem__)
        if len(names) > 1:
            groups.append(tuple(names))
    return tuple(sorted(groups, key=lambda grp: order[grp[0]]))


def check_groups(groups: Any, layers: Sequence[str], what: str) -> list[tuple[str, ...]]:
    """User tie groups as tuples, with an error naming a malformed group or an unknown layer."""
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Iterable):
        raise ProblemError(f"{what} must be a list of layer-name lists, got {groups!r}")
    known = set(layers)
    out = []
    for g, group in enumerate(groups):
        if isinstance(group, (str, bytes)) or not isinstance(group, Iterable):
            raise ProblemError(f"{what}: group {g} must be a list of layer names, got {group!r}")
        names = tuple(group)
        for name in names:
            if name not in known:
                raise ProblemError(f"{what}: group {g} names {name!r}, which is not one of the problem's layers")
        out.append(names)
    return out


def merge_groups(groups: Iterable[Sequence[str]], layers: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """Union overlapping groups; members in layer order, groups ordered by first member."""
    g = nx.Graph()
    for group in groups:
        nx.add_path(g, group)
    order = {name: i for i, name in enumerate(layers)}
    merged = [tuple(sorted(c, key=order.__getitem__)) for c in nx.connected_components(g) if len(c) > 1]
    return tuple(sorted(merged, key=lambda grp: order[grp[0]]))


def resolve_ties(
    ties: TieSpec,
    layers: Sequence[str],
    make_graph: Callable[[], ModelGraph],
    *,
    extra: Iterable[Sequence[str]] | None = None,
    exclude: str | Iterable[str] | None = None,
) -> Ties:
    """Tie groups among ``layers`` from a user spec; ``make_graph()`` is called only when needed.

    ``ties``: ``"auto"`` (layers reading the same tensor), ``None`` (no ties), a list of layer-name
    lists (used as given), or a callable ``(ModelGraph) -> groups`` for your own rule. ``extra``
    groups are added; ``exclude`` (names or patterns, glob or ``re:``) takes layers out of every
    group. Overlapping groups are merged.
    """
    method, reason, graph = "none", "", None
    if ties is None or ties is False:
        groups: list[Sequence[str]] = []
    elif isinstance(ties, str):
        if ties != "auto":
            raise ProblemError(f"ties must be 'auto', None, a list of layer-name lists or a callable(graph), got {ties!r}")
        graph = make_graph()
        groups, method, reason = list(same_input_groups(graph)), graph.method, graph.reason
    elif callable(ties):
        graph = make_graph()
        try:
            produced = ties(graph)
        except ProblemError:
            raise
        except Exception as exc:  # noqa: BLE001 - a user rule's failure, reported as such
            raise ProblemError(f"the ties callable failed: {type(exc).__name__}: {exc}") from None
        groups, method, reason = check_groups(produced, layers, "ties callable"), f"callable:{graph.method}", graph.reason
    else:
        groups, method = check_groups(ties, layers, "ties"), "user"
    if extra is not None:
        groups = [*groups, *check_groups(extra, layers, "extra ties")]
    drop = patterns(exclude, "tie exclude")
    if drop:
        groups = [[n for n in grp if not matches(n, drop)] for grp in groups]
    return Ties(merge_groups(groups, layers), method, reason, graph)
