"""The NPZ problem file: numpy arrays for the tables, one JSON header for everything else.

Layout (every member a plain ``.npy``; nothing is ever pickled or unpickled):

- ``header``: 0-d unicode array holding a JSON object with ``format``, ``version``, ``layers``,
  ``options``, ``budgets`` and, when present, ``cost_units``, ``ties``, ``fixed``, ``meta``, plus
  ``costs``: the list of cost names in order.
- ``sensitivity`` and, when present, ``sensitivity_std``: float64 ``[L, K]``.
- ``cost/<name>``: float64 ``[L, K]`` for every name in the header's ``costs``.
- ``allowed``: bool ``[L, K]`` (omitted when everything is allowed).
- ``params`` (float64 ``[L]``) and ``row_lengths`` (int64 ``[L]``) when the problem has them (version 2).
- ``pairwise``: float64 ``[L*K, L*K]`` when dense, or when sparse the COO triplet ``pairwise_row``,
  ``pairwise_col`` (int64), ``pairwise_data`` (float64) with ``pairwise_shape`` (int64 ``[2]``).

>>> import io
>>> from mpqopt import Problem
>>> buf = io.BytesIO()
>>> write_npz(Problem(["a"], [4, 8], [[0.5, 0.0]], costs={"size_bits": [[4, 8]]}), buf)
>>> _ = buf.seek(0)
>>> read_npz(buf).costs["size_bits"].tolist()
[[4.0, 8.0]]
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from typing import IO, Any

import numpy as np
import numpy.lib.format as npformat
import scipy.sparse as sp

from ..arguments import DEFAULT_MAX_BYTES
from ..errors import FormatError
from ..problem import Problem
from .encode import problem_to_dict
from .json_format import decode
from .validate import EXTENSION_PREFIX, LAYER_FACTS, read_problem

COST_PREFIX = "cost/"
_TABLES = ("sensitivity", "sensitivity_std", "allowed")
_SPARSE = ("pairwise_row", "pairwise_col", "pairwise_data", "pairwise_shape")
_ARRAY_KEYS = ("header",) + _TABLES + LAYER_FACTS + ("pairwise",) + _SPARSE
_ZIP_MAGIC = b"PK\x03\x04"
# what a damaged archive raises while its members are read
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError)


def write_npz(problem: Problem, file: IO[bytes]) -> None:
    """Write the problem as an (uncompressed) NPZ archive to a binary file object."""
    doc = problem_to_dict(problem, arrays=True)
    costs = doc.pop("costs")
    arrays: dict[str, np.ndarray] = {key: doc.pop(key) for key in _TABLES + LAYER_FACTS if key in doc}
    for name, table in costs.items():
        if not _member_name_ok(name):
            raise FormatError("this cost name cannot be an NPZ member name (it holds a NUL character or a lone "
                              "surrogate); rename the cost or save as .json", f"{COST_PREFIX}{name!r}")
        arrays[COST_PREFIX + name] = table
    pairwise = doc.pop("pairwise", None)
    if sp.issparse(pairwise):
        coo = sp.coo_array(pairwise)
        arrays["pairwise_row"] = coo.row.astype(np.int64)
        arrays["pairwise_col"] = coo.col.astype(np.int64)
        arrays["pairwise_data"] = coo.data.astype(np.float64)
        arrays["pairwise_shape"] = np.array(coo.shape, dtype=np.int64)
    elif pairwise is not None:
        arrays["pairwise"] = pairwise
    doc["costs"] = list(costs)
    arrays["header"] = np.array(json.dumps(doc, ensure_ascii=False, allow_nan=False))
    np.savez(file, **arrays)


def _member_name_ok(name: str) -> bool:
    # zip member names are UTF-8 and end at a NUL byte
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in name


def read_npz(file: IO[bytes], source: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> Problem:
    """Read a problem from an NPZ archive (binary file object) without ever unpickling anything.

    Every member's shape and dtype is read from its ``.npy`` header, inside the archive, and checked
    against the problem's ``L x K`` (and the ``max_bytes`` cap on all members together) before it is
    decompressed: a small archive that expands to gigabytes is refused in milliseconds.
    """
    start = file.read(4)
    file.seek(0)
    if start != _ZIP_MAGIC:
        raise FormatError("not an NPZ archive (a zip file of .npy arrays)", "$", source)
    try:
        headers = _member_headers(file, source)
        file.seek(0)
        npz = np.load(file, allow_pickle=False)
    except FormatError:
        raise
    except _CORRUPT as exc:
        raise FormatError(f"corrupt or truncated NPZ archive ({exc})", "$", source) from None
    with npz:
        return _read_members(npz, source, headers, max_bytes)


def _member_headers(file: IO[bytes], source: str | None) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each member's (shape, dtype) from its ``.npy`` header, nothing decompressed past it; refuses object arrays."""
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    with zipfile.ZipFile(file) as archive:
        for info in archive.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            with archive.open(info) as member:
                try:
                    version = npformat.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = npformat.read_array_header_1_0(member)
                    elif version == (2, 0):
                        shape, _, dtype = npformat.read_array_header_2_0(member)
                    else:
                        raise FormatError(f".npy format version {version[0]}.{version[1]} is not read here (1.0 and 2.0 are)", key, source)
                except FormatError:
                    raise
                except _CORRUPT as exc:
                    raise FormatError(f"not a readable .npy array ({exc})", key, source) from None
            if dtype.hasobject:
                raise FormatError("is an object array, which only pickle can load; mpqopt never loads pickles", key, source)
            out[key] = (tuple(shape), dtype)
    return out


def _check_expanded_size(headers: dict[str, tuple[tuple[int, ...], np.dtype]], keys: list[str], max_bytes: int, fail: Any) -> None:
    """The members in ``keys`` together, once decompressed, must fit the cap on problem files."""
    total = 0
    for key in keys:
        shape, dtype = headers[key]
        total += math.prod(shape) * dtype.itemsize
        if total > max_bytes:
            raise fail(key, f"the arrays expand to more than the {max_bytes:,} byte limit on problem files (this one: "
                            f"shape {shape}, dtype {dtype}); raise it with max_bytes= (mpqopt.load) or --max-file-size")


def _check_shapes(headers: dict[str, tuple[tuple[int, ...], np.dtype]], doc: dict[str, Any], fail: Any) -> None:
    """Every table's declared shape and dtype against ``L x K`` (from the header), before any is decompressed."""
    layers, options = doc.get("layers"), doc.get("options")
    if not isinstance(layers, list) or not isinstance(options, list):
        return  # the validator names that fault
    L, K = len(layers), len(options)
    tables = [key for key in headers if key in _TABLES or key.startswith(COST_PREFIX)]
    for key in tables + (["pairwise"] if "pairwise" in headers else []):
        shape, dtype = headers[key]
        rows, cols = (L * K, L * K) if key == "pairwise" else (L, K)
        if key == "allowed" and dtype.kind != "b":
            raise fail(key, f"expected a boolean array, got dtype {dtype}")
        if key != "allowed" and dtype.kind not in "fiu":
            raise fail(key, f"expected a real numeric array (float64), got dtype {dtype}")
        if len(shape) != 2:
            raise fail(key, f"expected a 2-d array of shape ({rows}, {cols}), got shape {shape}")
        unit = ("layer-option pair, index l*K + o", "layer-option pair") if key == "pairwise" else ("layer", "option")
        if shape[0] != rows:
            raise fail(key, f"expected {rows} rows (one per {unit[0]}), got {shape[0]}")
        if shape[1] != cols:
            raise fail(key, f"expected {cols} columns (one per {unit[1]}), got {shape[1]}")
    for key in LAYER_FACTS:
        if key in headers:
            shape, dtype = headers[key]
            kinds, what = ("iu", "an integer") if key == "row_lengths" else ("fiu", "a real numeric")
            if dtype.kind not in kinds:
                raise fail(key, f"expected {what} array, got dtype {dtype}")
            if shape != (L,):
                raise fail(key, f"expected shape ({L},), one per layer, got {shape}")
    for key in _SPARSE:
        if key in headers and len(headers[key][0]) != 1:
            raise fail(key, f"expected a 1-d array, got shape {headers[key][0]}")


def _read_members(npz: Any, source: str | None, headers: dict[str, tuple[tuple[int, ...], np.dtype]], max_bytes: int) -> Problem:
    def fail(where: str, message: str) -> FormatError:
        return FormatError(message, where, source)

    def get(key: str) -> np.ndarray:
        try:
            return npz[key]
        except ValueError as exc:
            if "allow_pickle" in str(exc):
                raise fail(key, "is an object array, which only pickle can load; mpqopt never loads pickles") from None
            raise fail(key, f"corrupt array ({exc})") from None
        except _CORRUPT as exc:
            raise fail(key, f"corrupt or truncated NPZ member ({exc})") from None

    members = set(npz.files)
    if "header" not in members:
        raise fail("header", "missing: an mpqopt NPZ problem holds its layers, options and budgets in a 'header' array")
    _check_expanded_size(headers, ["header"], max_bytes, fail)  # the header first: it gives L x K
    doc = _header(get("header"), fail, source)
    _check_shapes(headers, doc, fail)  # a wrong shape is named as such, before any size complaint
    _check_expanded_size(headers, list(headers), max_bytes, fail)
    cost_names = doc.get("costs", [])
    if not isinstance(cost_names, list) or not all(isinstance(n, str) for n in cost_names):
        raise fail("$.costs", "expected the list of cost names (each table is the array 'cost/<name>')")
    for key in _TABLES + LAYER_FACTS + ("pairwise",):
        if key in doc:
            raise fail(f"$.{key}", f"in an NPZ file this table is the array {key!r}, not part of the header")
    expected = set(_ARRAY_KEYS) | {COST_PREFIX + n for n in cost_names}
    unknown = sorted(m for m in members - expected if not m.startswith(EXTENSION_PREFIX))
    if unknown:
        listed = " (not listed in the header's costs)" if unknown[0].startswith(COST_PREFIX) else ""
        raise fail(unknown[0], f"unknown array{listed}; arrays are header, sensitivity, cost/<name>, sensitivity_std, "
                               f"allowed, params, row_lengths, pairwise or pairwise_row/col/data/shape")
    doc["costs"] = {}
    for name in cost_names:
        if COST_PREFIX + name not in members:
            raise fail(COST_PREFIX + name, "missing (the header lists this cost)")
        doc["costs"][name] = get(COST_PREFIX + name)
    for key in _TABLES + LAYER_FACTS:
        if key in members:
            doc[key] = get(key)
    pairwise = _pairwise(members, get, fail)
    if pairwise is not None:
        doc["pairwise"] = pairwise
    return read_problem(doc, source, lambda key, name: COST_PREFIX + name if name is not None else key)


def _header(arr: np.ndarray, fail: Any, source: str | None) -> dict[str, Any]:
    if arr.dtype.kind != "U" or arr.shape != ():
        raise fail("header", f"expected a 0-d unicode array holding JSON, got dtype {arr.dtype} shape {arr.shape}")
    doc = decode(str(arr[()]), source, container="header")
    if not isinstance(doc, dict):
        raise fail("header", f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _pairwise(members: set[str], get: Any, fail: Any) -> Any:
    present = [k for k in _SPARSE if k in members]
    if "pairwise" in members:
        if present:
            raise fail(present[0], "a file holds either a dense 'pairwise' or its sparse COO parts, not both")
        return get("pairwise")
    if not present:
        return None
    missing = [k for k in _SPARSE if k not in members]
    if missing:
        raise fail(missing[0], "missing: a sparse pairwise needs pairwise_row, pairwise_col, pairwise_data and pairwise_shape")
    row, col, data, shape = (get(k) for k in _SPARSE)
    for key, arr, kinds in (("pairwise_row", row, "iu"), ("pairwise_col", col, "iu"), ("pairwise_data", data, "fiu")):
        if arr.ndim != 1 or arr.dtype.kind not in kinds:
            raise fail(key, f"expected a 1-d {'integer' if kinds == 'iu' else 'numeric'} array, got dtype {arr.dtype} shape {arr.shape}")
        if arr.size != data.size:
            raise fail(key, f"has {arr.size} entries but pairwise_data has {data.size}")
    if shape.shape != (2,) or shape.dtype.kind not in "iu" or (shape < 0).any():
        raise fail("pairwise_shape", f"expected two non-negative integers, got {shape.tolist()}")
    n_rows, n_cols = (int(v) for v in shape)
    for key, idx, bound in (("pairwise_row", row, n_rows), ("pairwise_col", col, n_cols)):
        if idx.size and (idx.min() < 0 or idx.max() >= bound):
            bad = int(np.flatnonzero((idx < 0) | (idx >= bound))[0])
            raise fail(f"{key}[{bad}]", f"index {int(idx[bad])} is outside 0..{bound - 1}")
    return sp.coo_array((data, (row, col)), shape=(n_rows, n_cols))
