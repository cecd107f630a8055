"""What each SQL function means: its arguments, its checks, and its per-row callable.

`prepare` runs once per statement (from xxx_init): it validates the argument count and
types and every constant argument, picks an encoder per argument, and returns the
callable the shim calls for each row. Per-row work is kept to what a row needs.

Per-row failures follow the on_error policy: 'error' (the default) fails the
statement with the message; 'null' makes that row NULL and adds the message as a
warning. A NULL argument always gives NULL without a request.
"""

from __future__ import annotations

import json
import sys
import platform
from typing import Callable

from .. import __version__, access, export, server
from .. import types as sqltypes
from ..errors import ArgumentError, SqlmlError, WARN_DATA_TRUNCATED
from ..services import comprehend, sagemaker
from ..services.codecs import csv_field
from . import Engine
from .batch import WarmUp
from .cache import MISS
from .tally import FLUSH_EVERY, Tally, flush_all

_FLUSH_MASK = FLUSH_EVERY - 1  # FLUSH_EVERY is a power of two

STRING, REAL, INT, DECIMAL = sqltypes.KIND_STRING, sqltypes.KIND_REAL, sqltypes.KIND_INT, sqltypes.KIND_DECIMAL
KIND_NAMES = {STRING: "STRING", REAL: "REAL", INT: "INTEGER", DECIMAL: "DECIMAL"}
ORDINALS = ("1st", "2nd", "3rd") + tuple(f"{i}th" for i in range(4, 300))
DEFAULT_COMPREHEND_BATCH = 25
DEFAULT_SAGEMAKER_BATCH = 10000

# (callable, max_length, decimals, argument types the server should coerce to)
Prepared = tuple[Callable, int, int, tuple[int, ...]]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _text(value: bytes, function: str, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ArgumentError(
            f"{function}: {what} is not valid UTF-8; pass CONVERT(expr USING utf8mb4)"
        ) from None


def _const_int(value: object, function: str, position: int, name: str) -> int:
    try:
        number = int(value.decode("ascii").strip()) if isinstance(value, bytes) else value
        if isinstance(number, float) and number.is_integer():
            number = int(number)
    except (UnicodeDecodeError, ValueError):
        number = None
    if not isinstance(number, int) or number <= 0:
        raise ArgumentError(f"{function}: {ORDINALS[position]} argument ({name}) must be an integer > 0, got {value!r}")
    return number


def _on_error(engine: Engine, exc: SqlmlError):
    """Applies the per-row policy to a failed row: raise, or NULL plus a warning."""
    if engine.settings.on_error == "null":
        server.warn(exc.sql_errno, exc.sql_message)
        return None
    raise exc


# ---- Comprehend ---------------------------------------------------------------


def _prepare_sentiment(engine: Engine, name: str, kind: int, types: tuple, consts: tuple, want: str) -> Prepared:
    n = len(types)
    if n not in (2, 3):
        raise ArgumentError(f"{name}: takes (text, language_code [, max_batch_size]); got {_plural(n, 'argument')}")
    if consts[1] is not None:
        comprehend.check_language(_text(consts[1], name, "language code"), name)
    if n == 3 and consts[2] is not None:
        # max_batch_size bounds the batch path; the scalar path only validates it.
        _const_int(consts[2], name, 2, "max_batch_size")
    languages: dict[bytes, str] = {}
    cache_get = engine.cache.get
    tally = Tally(engine.counters)

    def row(text, language, max_batch_size=None):
        if text is None or language is None:
            return None
        try:
            code = languages.get(language)
            if code is None:
                code = comprehend.check_language(_text(language, name, "language code"), name)
                languages[language] = code
            if max_batch_size is not None and max_batch_size <= 0:
                raise ArgumentError(f"{name}: 3rd argument (max_batch_size) must be > 0, got {max_batch_size}")
            value = _text(text, name, "text")
            if not 0 < len(text) <= comprehend.MAX_TEXT_BYTES:  # text is the UTF-8 bytes
                comprehend.check_text(value, name)
            result = cache_get(("comprehend", code, value))
            if result is MISS:
                result = engine.sentiment(value, code, max_batch_size or DEFAULT_COMPREHEND_BATCH)
            else:  # counted in bulk (engine/tally.py)
                tally.hits += 1
                if not tally.hits & _FLUSH_MASK:
                    tally.flush()
        except SqlmlError as exc:
            return _on_error(engine, exc)
        return result.label_bytes if want == "label" else result.confidence

    coerce = (STRING, STRING, INT)[:n]
    return row, (8 if kind == STRING else 0), 31, coerce


def prepare_sentiment(engine, name, kind, types, consts):
    return _prepare_sentiment(engine, name, kind, types, consts, "label")


def prepare_confidence(engine, name, kind, types, consts):
    return _prepare_sentiment(engine, name, kind, types, consts, "confidence")


# ---- SageMaker ----------------------------------------------------------------


# Numbers are written canonically (76, 76.0 and 76.00 all as "76"; 1.50 as "1.5"), so a
# value reaches the endpoint, and the cache, the same way whether it came from an INT
# column, a DOUBLE, a DECIMAL, or a stored function's REAL parameter.


def _encode_int(v: int) -> str:
    return str(v)


def _encode_real(v: float) -> str:
    # One repr() and string checks: this runs twice per row on the batch path. Integral
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


def _encoder(kind: int, function: str, position: int) -> Callable[[object], str]:
    if kind == INT:
        return _encode_int
    if kind == REAL:
        return _encode_real
    if kind == DECIMAL:
        return _encode_decimal
    what = f"{ORDINALS[position]} argument"
    return lambda v: csv_field(_text(v, function, what))


def _line_encoder(encoders: tuple) -> Callable[[tuple], str]:
    """The CSV line of one row's features: one field per argument, in order."""
    if len(encoders) == 1:
        (encode,) = encoders
        return lambda features: encode(features[0])
    return lambda features: ",".join([enc(v) for enc, v in zip(encoders, features)])


def _const_endpoint(value: object, name: str) -> str:
    """The endpoint name, which must be a constant string (it picks the target at init)."""
    if value is None or not isinstance(value, bytes):
        raise ArgumentError(f"{name}: 1st argument (endpoint name) must be a constant string")
    # Interned: every cache key of this endpoint then holds the same string object, so
    # comparing keys never reads a second copy of the name.
    return sys.intern(sagemaker.check_endpoint(_text(value, name, "endpoint name"), name))


def prepare_sagemaker(engine: Engine, name: str, kind: int, types: tuple, consts: tuple) -> Prepared:
    n = len(types)
    if n < 4:
        raise ArgumentError(f"{name}: needs (endpoint, return_type, max_batch_size, arg1, ...); got {n} args")
    endpoint = _const_endpoint(consts[0], name)
    if consts[1] is None or not isinstance(consts[1], bytes):
        raise ArgumentError(f"{name}: 2nd argument (return type, e.g. 'REAL') must be a constant string")
    rtype = sqltypes.parse(_text(consts[1], name, "return type"), name)
    if rtype.kind != kind:
        suffix = {STRING: "string", REAL: "real", INT: "int", DECIMAL: "decimal"}[rtype.kind]
        raise ArgumentError(f"{name}: return type {rtype.sql} needs aws_sagemaker_invoke_endpoint_{suffix}")
    batch_size = _const_int(consts[2], name, 2, "max_batch_size")
    line_of = _line_encoder(tuple(_encoder(t, name, i + 3) for i, t in enumerate(types[3:])))
    what = f"{name} (endpoint '{endpoint}')"
    convert = rtype.convert
    cache_get = engine.cache.get
    tally = Tally(engine.counters)

    def answer(line: str):
        raw = cache_get(("sagemaker", endpoint, line))
        if raw is MISS:
            raw = engine.invoke(endpoint, line, batch_size)
        else:  # counted in bulk (engine/tally.py)
            tally.hits += 1
            if not tally.hits & _FLUSH_MASK:
                tally.flush()
        return convert(raw, what)

    if len(types) == 4 and rtype.kind != STRING:
        # One feature, a number: the batch path's common case, without the generic
        # path's argument tuple, joins and truncation check (row() below).
        encode = _encoder(types[3], name, 3)

        def row1(_endpoint, _type, _batch, feature):
            if feature is None:
                return None
            try:
                return answer(encode(feature))
            except SqlmlError as exc:
                return _on_error(engine, exc)

        return row1, rtype.max_length(), rtype.decimals(), (STRING, STRING, INT, types[3])

    def row(_endpoint, _type, _batch, *features):
        if None in features:
            return None
        try:
            value = answer(line_of(features))
        except SqlmlError as exc:
            return _on_error(engine, exc)
        if type(value) is sqltypes.Truncated:
            server.warn(WARN_DATA_TRUNCATED, f"{what}: answer cut to {rtype.sql}")
        return value

    return row, rtype.max_length(), rtype.decimals(), (STRING, STRING, INT) + tuple(types[3:])


# ---- warm-ups: the SQL-only batch path (engine/batch.py) ---------------------------


class WarmAggregate:
    """An aggregate that sends a query's distinct inputs in batches into the cache.

    The shim calls clear() at each group's start, add(*row) per row, and the object
    itself for the group's result: the number of inputs it sent. `add` is the
    function-specific closure given at construction (an instance attribute, read once
    by the shim), so a row costs one Python call.
    """

    def __init__(self, engine: Engine, name: str):
        self.engine = engine
        self.name = name
        self.sessions: dict = {}
        self.add: Callable[..., None] = _ignore

    def session(self, key, make: Callable[[], WarmUp]) -> WarmUp:
        session = self.sessions.get(key)
        if session is None:
            session = self.sessions[key] = make()
        return session

    def clear(self):
        self.sessions = {}

    def __call__(self):
        sent, error = 0, None
        for session in self.sessions.values():
            sent += session.finish()
            error = error or session.error
        self.sessions = {}
        self.engine.counters.add("warmup_cnt")
        if error is not None:
            return _on_error(self.engine, error) if self.engine.settings.on_error == "null" else _raise(error)
        return sent


def _ignore(*_row):
    return None


def _raise(exc):
    raise exc


def prepare_warm_comprehend(engine: Engine, name: str, kind: int, types: tuple, consts: tuple) -> Prepared:
    n = len(types)
    if n not in (2, 3):
        raise ArgumentError(f"{name}: takes (text, language_code [, max_batch_size]); got {_plural(n, 'argument')}")
    if consts[1] is not None:
        comprehend.check_language(_text(consts[1], name, "language code"), name)
    batch_size = _const_int(consts[2], name, 2, "max_batch_size") if n == 3 else DEFAULT_COMPREHEND_BATCH
    agg = WarmAggregate(engine, name)
    languages: dict[bytes, str] = {}

    def add(text, language, _batch=None):
        # A bad row is not batched: its own call reports it, by the on_error policy.
        if text is None or language is None or not 0 < len(text) <= comprehend.MAX_TEXT_BYTES:
            return
        code = languages.get(language)
        if code is None:
            try:
                code = comprehend.check_language(_text(language, name, "language code"), name)
            except SqlmlError:
                return
            languages[language] = code
        try:
            value = text.decode("utf-8")
        except UnicodeDecodeError:
            return
        session = agg.sessions.get(code)
        if session is None:
            session = agg.session(code, lambda: WarmUp(
                engine, ("comprehend", code), lambda texts: engine.send_sentiment(code, texts),
                min(batch_size, comprehend.MAX_BATCH_TEXTS), comprehend.MAX_BATCH_TEXTS * comprehend.MAX_TEXT_BYTES))
        session.add(value)

    agg.add = add
    return agg, 0, 0, (STRING, STRING, INT)[:n]


def prepare_warm_sagemaker(engine: Engine, name: str, kind: int, types: tuple, consts: tuple) -> Prepared:
    n = len(types)
    if n < 3:
        raise ArgumentError(f"{name}: needs (endpoint, max_batch_size, arg1, ...); got {_plural(n, 'argument')}")
    endpoint = _const_endpoint(consts[0], name)
    batch_size = _const_int(consts[1], name, 1, "max_batch_size")
    line_of = _line_encoder(tuple(_encoder(t, name, i + 2) for i, t in enumerate(types[2:])))
    agg = WarmAggregate(engine, name)

    def make() -> WarmUp:
        return WarmUp(engine, ("sagemaker", endpoint), lambda lines: engine.send_invoke(endpoint, lines),
                      batch_size, sagemaker.MAX_BODY_BYTES)

    def add(_endpoint, _batch, *features):
        if None in features:
            return
        try:
            line = line_of(features)
        except SqlmlError:
            return  # a bad row is not batched: its own call reports it, by the on_error policy
        session = agg.sessions.get(endpoint)
        if session is None:
            session = agg.session(endpoint, make)
        session.add(line)

    if len(types) == 3:
        encode = _encoder(types[2], name, 2)

        def add1(_endpoint, _batch, feature):  # add() for one feature, without the tuple
            if feature is None:
                return
            try:
                line = encode(feature)
            except SqlmlError:
                return
            session = agg.sessions.get(endpoint)
            if session is None:
                session = agg.session(endpoint, make)
            session.add(line)

    agg.add = add1 if len(types) == 3 else add
    return agg, 0, 0, (STRING, INT) + tuple(types[2:])


def prepare_cache_clear(engine, name, kind, types, consts):
    if types:
        raise ArgumentError(f"{name}: takes no arguments")
    return engine.cache.clear, 0, 0, ()


# ---- introspection and diagnostics ----------------------------------------------


def version_text() -> str:
    import boto3

    return (f"sqlml {__version__} (library {server.library_version()}, engine {__version__}, "
            f"Python {platform.python_version()}, boto3 {boto3.__version__}, server {server.flavor()})")


def prepare_version(engine, name, kind, types, consts):
    if types:
        raise ArgumentError(f"{name}: takes no arguments")
    text = version_text().encode()
    return (lambda: text), len(text), 31, ()


def prepare_status(engine, name, kind, types, consts):
    if types:
        raise ArgumentError(f"{name}: takes no arguments")

    def row():
        flush_all()
        snap = engine.counters.snapshot()
        snap["cache"] = engine.cache.stats()
        snap["settings"] = {k: v for k, v in engine.settings.__dict__.items()}
        snap["settings_error"] = engine.reload_error
        return json.dumps(snap, sort_keys=True).encode()

    return row, 65535, 31, ()


def _echo(value):
    return value


def prepare_echo(engine, name, kind, types, consts):
    if len(types) != 1:
        raise ArgumentError(f"{name}: takes exactly 1 argument")
    return _echo, 0, 0, (INT,)


# Which role each function needs (access.py); None: anyone may call it.
REGISTRY: dict[str, tuple[int, Callable[..., Prepared], tuple[str, ...]]] = {
    "aws_comprehend_detect_sentiment": (STRING, prepare_sentiment, ("comprehend",)),
    "aws_comprehend_detect_sentiment_confidence": (REAL, prepare_confidence, ("comprehend",)),
    "aws_sagemaker_invoke_endpoint_real": (REAL, prepare_sagemaker, ("sagemaker",)),
    "aws_sagemaker_invoke_endpoint_int": (INT, prepare_sagemaker, ("sagemaker",)),
    "aws_sagemaker_invoke_endpoint_decimal": (DECIMAL, prepare_sagemaker, ("sagemaker",)),
    "aws_sagemaker_invoke_endpoint_string": (STRING, prepare_sagemaker, ("sagemaker",)),
    "sqlml_version": (STRING, prepare_version, ()),
    "sqlml_status": (STRING, prepare_status, ()),
    "sqlml_echo_int": (INT, prepare_echo, ()),
    "sqlml_warm_comprehend": (INT, prepare_warm_comprehend, ("comprehend",)),
    "sqlml_warm_sagemaker": (INT, prepare_warm_sagemaker, ("sagemaker",)),
    "sqlml_cache_clear": (INT, prepare_cache_clear, ("comprehend", "sagemaker")),
}


# Functions that also need each argument's name as written in the query.
NAMED_REGISTRY: dict[str, tuple[int, Callable[..., Prepared]]] = {
    export.FUNCTION: (STRING, export.prepare),
}


def prepare(engine: Engine, name: str, kind: int, types: tuple, consts: tuple, names: tuple = ()) -> Prepared:
    if name in NAMED_REGISTRY:
        expected_kind, factory = NAMED_REGISTRY[name]
        if expected_kind != kind:
            raise ArgumentError(f"{name}: library and engine disagree on its return type; reinstall sqlml")
        engine.maybe_reload()
        return factory(engine, name, kind, types, consts, names)
    entry = REGISTRY.get(name)
    if entry is None:
        raise ArgumentError(f"{name}: not a function of this sqlml engine ({__version__}); reinstall sqlml")
    expected_kind, factory, services = entry
    if expected_kind != kind:
        raise ArgumentError(
            f"{name}: library and engine disagree on its return type ({KIND_NAMES[kind]} vs "
            f"{KIND_NAMES[expected_kind]}); reinstall sqlml"
        )
    engine.maybe_reload()
    prepared = factory(engine, name, kind, types, consts)
    if services:
        error = access.refusal(name, *services)
        if error is not None:
            engine.counters.add("access_denied_cnt")
        else:
            error = access.binlog_refusal(name)
        if error is not None:
            return (access.Refused(error),) + tuple(prepared[1:])
    return prepared
