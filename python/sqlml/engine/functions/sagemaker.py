"""SageMaker: aws_sagemaker_invoke_endpoint_<kind>(endpoint, return_type, max_batch_size,
arg1, ...); each row's arguments become one CSV line, its answer the declared type."""

from __future__ import annotations

import sys
from typing import Callable

from ... import host
from ... import types as sqltypes
from ...crossing import MEMO_INT, MEMO_REAL, Prepared
from ...errors import ArgumentError, SqlmlError, WARN_DATA_TRUNCATED
from ...services import sagemaker
from ...services.codecs import csv_field
from .. import Engine
from ..cache import MISS
from ..plans import Bind
from ..tally import Tally
from .common import (DECIMAL, FLUSH_MASK, INT, ORDINALS, REAL, STRING, apply_on_error, as_text, const_int, memo_spec,
                     sagemaker_target)


# Numbers are written canonically (76, 76.0 and 76.00 all as "76"; 1.50 as "1.5"), so a
# value reaches the endpoint, and the cache, the same way whether it came from an INT
# column, a DOUBLE, a DECIMAL, or a stored function's REAL parameter.


def _encode_int(v: int) -> str:
    return str(v)


def _encode_real(v: float) -> str:
    # One repr() and string checks: this runs per row on the scalar path. Integral
    # values below 1e15 print as their integer ("76.0" -> "76", "-0.0" -> "0"); repr()
    # of every other finite float already ends in a digit; "inf" and "nan" do not.
    text = repr(v)
    if text.endswith(".0"):
        if -1e15 < v < 1e15:
            return "0" if v == 0 else text[:-2]
        return text
    if text[-1] in "fn":
        raise ArgumentError(f"cannot send {v!r} to an endpoint: only finite numbers have a CSV form")
    return text


def _encode_decimal(v: bytes) -> str:
    text = v.decode("ascii")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
        if text in ("-0", "-", ""):
            text = "0"
    return text


def encoder(kind: int, function: str, position: int) -> Callable[[object], str]:
    if kind == INT:
        return _encode_int
    if kind == REAL:
        return _encode_real
    if kind == DECIMAL:
        return _encode_decimal
    what = f"{ORDINALS[position]} argument"
    return lambda v: csv_field(as_text(v, function, what))


def line_encoder(encoders: tuple) -> Callable[[tuple], str]:
    """The CSV line of one row's features: one field per argument, in order."""
    if len(encoders) == 1:
        (encode,) = encoders
        return lambda features: encode(features[0])
    return lambda features: ",".join([enc(v) for enc, v in zip(encoders, features, strict=True)])


def const_endpoint(value: object, name: str) -> str:
    """The endpoint name, which must be a constant string (it picks the target at init)."""
    if value is None or not isinstance(value, bytes):
        raise ArgumentError(f"{name}: 1st argument (endpoint name) must be a constant string")
    # Interned: every cache key of this endpoint then holds the same string object, so
    # comparing keys never reads a second copy of the name.
    return sys.intern(sagemaker.check_endpoint(as_text(value, name, "endpoint name"), name))


def plan_sagemaker(engine: Engine, name: str, kind: int, types: tuple, consts: tuple) -> Bind:
    """Checks the call and makes every choice that depends on the call site only; the
    bind returned makes one statement's Prepared (engine/plans.py keeps it)."""
    n = len(types)
    if n < 4:
        raise ArgumentError(f"{name}: needs (endpoint, return_type, max_batch_size, arg1, ...); got {n} args")
    endpoint = const_endpoint(consts[0], name)
    if consts[1] is None or not isinstance(consts[1], bytes):
        raise ArgumentError(f"{name}: 2nd argument (return type, e.g. 'REAL') must be a constant string")
    rtype = sqltypes.parse(as_text(consts[1], name, "return type"), name)
    if rtype.kind != kind:
        suffix = {STRING: "string", REAL: "real", INT: "int", DECIMAL: "decimal"}[rtype.kind]
        raise ArgumentError(f"{name}: return type {rtype.sql} needs aws_sagemaker_invoke_endpoint_{suffix}")
    batch_size = const_int(consts[2], name, 2, "max_batch_size")
    what = f"{name} (endpoint '{endpoint}')"
    convert = rtype.convert
    max_length, decimals = rtype.max_length(), rtype.decimals()
    spec = None
    if rtype.kind == REAL:
        spec = memo_spec(engine, sagemaker_target(endpoint), 3, n - 3, MEMO_REAL)
    elif rtype.kind == INT:
        spec = memo_spec(engine, sagemaker_target(endpoint), 3, n - 3, MEMO_INT, rtype.bounds())

    def answerer() -> Callable[[str], object]:
        # Per statement: the tally its own thread bumps (engine/tally.py), made at the
        # first hit: a statement of one row that the cache cannot answer (a client
        # sending one statement per row) never pays for it.
        cache_get = engine.cache.get
        invoke = engine.invoker(endpoint, batch_size)
        tally = None

        def answer(line: str):
            nonlocal tally
            raw = cache_get(("sagemaker", endpoint, line))
            if raw is MISS:
                raw = invoke(line)
            else:  # counted in bulk (engine/tally.py)
                if tally is None:
                    tally = Tally(engine.counters)
                tally.hits += 1
                if not tally.hits & FLUSH_MASK:
                    tally.flush()
            return convert(raw, what)

        return answer

    if len(types) == 4 and rtype.kind != STRING:
        # One feature, a number: the batch path's common case, without the generic
        # path's argument tuple, joins and truncation check (row() below).
        encode = encoder(types[3], name, 3)
        coerce1 = (STRING, STRING, INT, types[3])

        def bind1() -> Prepared:
            answer = answerer()

            def row1(_endpoint, _type, _batch, feature):
                if feature is None:
                    return None
                try:
                    return answer(encode(feature))
                except SqlmlError as exc:
                    return apply_on_error(engine, exc)

            return Prepared(row1, max_length, decimals, coerce1, spec)

        return bind1

    line_of = line_encoder(tuple(encoder(t, name, i + 3) for i, t in enumerate(types[3:])))
    coerce = (STRING, STRING, INT) + tuple(types[3:])

    def bind() -> Prepared:
        answer = answerer()

        def row(_endpoint, _type, _batch, *features):
            if None in features:
                return None
            try:
                value = answer(line_of(features))
            except SqlmlError as exc:
                return apply_on_error(engine, exc)
            if type(value) is sqltypes.Truncated:
                host.warn(WARN_DATA_TRUNCATED, f"{what}: answer cut to {rtype.sql}")
            return value

        return Prepared(row, max_length, decimals, coerce, spec)

    return bind


def prepare_sagemaker(engine: Engine, name: str, kind: int, types: tuple, consts: tuple) -> Prepared:
    return plan_sagemaker(engine, name, kind, types, consts)()
