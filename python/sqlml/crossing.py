"""What crosses between the C shim and the engine, declared once.

The constants here are the C side's too: the build generates native's
sqlml_constants.h from this file (native/gen_constants.py), so C and Python cannot
disagree. Keep this module free of imports beyond the standard library: the build
reads it before sqlml is installed.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

# Result and argument kinds, numbered as the servers' Item_result (UDF_*_RESULT).
KIND_STRING, KIND_REAL, KIND_INT, KIND_DECIMAL = 0, 1, 2, 4
# The server's "decimals not fixed" (mysql_com.h NOT_FIXED_DEC): a result's decimals
# are whatever its value has.
NOT_FIXED_DEC = 31
# How a reading function takes its answer from the statement memo (native/memo.h).
MEMO_REAL, MEMO_INT, MEMO_LABEL, MEMO_CONFIDENCE = 0, 1, 2, 3

# The names generate_header() writes, with the C prefix each takes.
C_CONSTANTS = {
    "RESULT_": ("KIND_STRING", "KIND_REAL", "KIND_INT", "KIND_DECIMAL"),
    "": ("NOT_FIXED_DEC", "MEMO_REAL", "MEMO_INT", "MEMO_LABEL", "MEMO_CONFIDENCE"),
}


class MemoSpec(NamedTuple):
    """Where a warm-up keeps, and a reading function finds, a statement's answers in C
    (native/sqlml_udf.c parses it as "y#IIiLLdLL|p")."""

    target: bytes  # b"comprehend" or b"sagemaker\0<endpoint>"
    first: int  # the first key argument
    count: int  # how many arguments make the key
    mode: int  # MEMO_*
    low: int  # MEMO_INT: the declared type's range
    high: int
    ttl_s: float  # the cache's: a memo is not used past it
    max_entries: int  # the cache's bounds
    max_bytes: int
    csv_lines: bool  # C may write the rows' CSV lines (numeric keys only)


class Prepared(NamedTuple):
    """What prepare gives the shim for one statement's call site (native/sqlml_udf.c
    parses it as "OLLO!|O")."""

    call: Callable  # per row (or an aggregate object: clear/add/result)
    max_length: int = 0  # a string result's longest value
    decimals: int = NOT_FIXED_DEC
    coerce: tuple = ()  # per argument, the kind the server should convert it to
    memo: MemoSpec | None = None  # the batch path's memo lane, or none


def generate_header() -> str:
    """sqlml_constants.h: the constants above as C enumerators."""
    lines = ["/* Generated from python/sqlml/crossing.py by native/gen_constants.py: do not edit. */",
             "#ifndef SQLML_CONSTANTS_H", "#define SQLML_CONSTANTS_H", ""]
    for prefix, names in C_CONSTANTS.items():
        for name in names:
            c_name = prefix + (name[len("KIND_"):] if prefix else name)
            lines.append(f"enum {{ {c_name} = {globals()[name]} }};")
    lines += ["", "#endif", ""]
    return "\n".join(lines)
