"""Reading and writing problem files (JSON and NPZ, format ``mpqopt.problem`` versions 1 and 2).

Version 2 adds an option's storage ``format`` and the layer facts ``params`` and ``row_lengths``; the
writers write version 1 when a problem has none of them (see ``encode.version_for``).

``load``/``save`` work on files; ``problem_to_dict``/``problem_from_dict`` on in-memory documents;
``schema()`` returns the JSON Schema of the JSON layout.
"""

from .encode import problem_to_dict
from .files import load, save
from .json_format import dumps, loads
from .validate import FORMAT, SUPPORTED_VERSIONS, VERSION, problem_from_dict, schema

__all__ = [
    "FORMAT", "SUPPORTED_VERSIONS", "VERSION", "dumps", "load", "loads", "problem_from_dict",
    "problem_to_dict", "save", "schema",
]
