"""What crosses between the C shim and the engine, declared once.

A row's path across (native/sqlml_udf.c moves the values; bridge.py is the Python
entry point):
- at statement start, xxx_init calls bridge.prepare(name, kind, arg_types,
  constants, arg_names) and gets a Prepared (below) for that call site;
- per row, xxx calls Prepared.call(*args), each argument as its kind after the
  server converted it to Prepared.coerce's kind: None for SQL NULL; KIND_INT as
  int (a signed 64-bit value); KIND_REAL as float; KIND_STRING and KIND_DECIMAL as
  bytes (a string's bytes in its column's charset; a decimal's ASCII digits), whose
  meaning is Python's call;
- the answer comes back as None (SQL NULL), float (REAL), int (INT), or bytes
  (STRING, and DECIMAL as exact digits); a SqlmlError raised instead becomes the
  statement's error (its sql_errno and message);
- a batch path's rows may be answered in C from the statement memo (MemoSpec) without
  entering Python at all.

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

# The status variables, in SHOW STATUS order: (C id, name). Aurora's seven keep Aurora's
# names and meanings (engine/counters.py says them); sqlml's own totals carry the Sqlml_
# prefix. C keeps the values (native/counters.c, SQLML_COUNTER_<id>); the engine finds
# each by its name without the prefix.
STATUS_COUNTERS = (
    ("LOGICAL_REQUEST", "Aurora_ml_logical_request_cnt"),
    ("LOGICAL_RESPONSE", "Aurora_ml_logical_response_cnt"),
    ("ACTUAL_REQUEST", "Aurora_ml_actual_request_cnt"),
    ("ACTUAL_RESPONSE", "Aurora_ml_actual_response_cnt"),
    ("CACHE_HIT", "Aurora_ml_cache_hit_cnt"),
    ("RETRY_REQUEST", "Aurora_ml_retry_request_cnt"),
    ("SINGLE_REQUEST", "Aurora_ml_single_request_cnt"),
    ("BATCHED_ROW", "Sqlml_batched_row_cnt"),
    ("WARMUP", "Sqlml_warmup_cnt"),
    ("ERROR", "Sqlml_error_cnt"),
    ("THROTTLE", "Sqlml_throttle_cnt"),
    ("TIMEOUT", "Sqlml_timeout_cnt"),
    ("BATCH_MAX_ROWS", "Sqlml_batch_max_rows"),
    ("SERVICE_TIME_US", "Sqlml_service_time_us"),
    ("ACCESS_DENIED", "Sqlml_access_denied_cnt"),
    ("REWRITTEN", "Sqlml_rewritten_cnt"),  # MySQL: statements the rewrite changed
    ("MEMO_HIT", "Sqlml_memo_hit_cnt"),  # rows the batch path answered in C from the statement memo
    ("REWRITE_ANALYSED", "Sqlml_rewrite_analysed_cnt"),  # MySQL: statements the filter gave Python
    ("PREPARE_REUSE", "Sqlml_prepare_reuse_cnt"),  # statements whose preparation was kept (engine/plans.py)
)

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
    continued = " \\"
    lines += ["", "/* X(id, name) per status counter, in SHOW STATUS order (native/counters.h). */",
              "#define SQLML_COUNTERS(X)" + continued]
    for i, (cid, name) in enumerate(STATUS_COUNTERS):
        lines.append(f'  X({cid}, "{name}")' + (continued if i < len(STATUS_COUNTERS) - 1 else ""))
    lines += ["", "#endif", ""]
    return "\n".join(lines)
