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
from itertools import compress
from typing import Callable

from .. import __version__, access, export, server, support
from .. import types as sqltypes
from ..errors import ArgumentError, SqlmlError, WARN_DATA_TRUNCATED
from ..services import comprehend, sagemaker
from ..services.codecs import csv_field
from . import Engine
from .batch import WarmUp
from .cache import MISS
from .dispatch import QueryKilled
from .tally import FLUSH_EVERY, Tally, flush_all

_FLUSH_MASK = FLUSH_EVERY - 1  # FLUSH_EVERY is a power of two

STRING, REAL, INT, DECIMAL = sqltypes.KIND_STRING, sqltypes.KIND_REAL, sqltypes.KIND_INT, sqltypes.KIND_DECIMAL
KIND_NAMES = {STRING: "STRING", REAL: "REAL", INT: "INTEGER", DECIMAL: "DECIMAL"}
ORDINALS = ("1st", "2nd", "3rd") + tuple(f"{i}th" for i in range(4, 300))
DEFAULT_COMPREHEND_BATCH = 25

# (callable, max_length, decimals, argument types the server should coerce to[, memo spec])
Prepared = tuple  # (Callable, int, int, tuple[int, ...]) or that plus (tuple | None)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _text(value: object, function: str, what: str) -> str:
    if not isinstance(value, bytes):
        # A number where text is expected (a constant, seen before the server converts it
        # to the string the row then carries): the same text, so the same verdict.
        return str(value)
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
    """Applies the per-row policy to a failed row: raise, or NULL plus a warning. A
    killed statement is never a NULL."""
    if engine.settings.on_error == "null" and not isinstance(exc, QueryKilled):
        server.warn(exc.sql_errno, exc.sql_message)
        return None
    raise exc


# ---- the memo lane (native/memo.h) ---------------------------------------------------
#
# A fifth element of Prepared: the reading functions and warm-ups of the batch path
# name their target and key arguments, so that C can keep a statement's answers by
# the rows' own argument bytes and answer reads without a crossing. None where the
# cache is off (the memo is the cache's answers, seen from C).

MEMO_REAL, MEMO_INT, MEMO_LABEL, MEMO_CONFIDENCE = 0, 1, 2, 3
COMPREHEND_TARGET = b"comprehend"


def _sagemaker_target(endpoint: str) -> bytes:
    return b"sagemaker\0" + endpoint.encode()


def _memo_spec(engine: Engine, target: bytes, first: int, count: int, mode: int = MEMO_REAL,
               bounds: tuple[int, int] = (0, 0), csv_lines: bool = False) -> tuple | None:
    s = engine.settings
    if not s.cache_enabled:
        return None
    return (target, first, count, mode, bounds[0], bounds[1], float(s.cache_ttl_s), s.cache_max_entries,
            s.cache_max_mb * 1024 * 1024, csv_lines)


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
    spec = _memo_spec(engine, COMPREHEND_TARGET, 0, 2, MEMO_LABEL if want == "label" else MEMO_CONFIDENCE)
    return row, (8 if kind == STRING else 0), 31, coerce, spec


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
    spec = None
    if rtype.kind == REAL:
        spec = _memo_spec(engine, _sagemaker_target(endpoint), 3, n - 3, MEMO_REAL)
    elif rtype.kind == INT:
        spec = _memo_spec(engine, _sagemaker_target(endpoint), 3, n - 3, MEMO_INT, rtype.bounds())

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

        return row1, rtype.max_length(), rtype.decimals(), (STRING, STRING, INT, types[3]), spec

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

    return row, rtype.max_length(), rtype.decimals(), (STRING, STRING, INT) + tuple(types[3:]), spec


# ---- warm-ups: the SQL-only batch path (engine/batch.py) ---------------------------


class WarmAggregate:
    """An aggregate that sends a query's distinct inputs in batches into the cache.

    The shim calls clear() at each group's start, add(*row) per row, and the object
    itself for the group's result: the number of inputs it sent. `add` is the
    function-specific closure given at construction (an instance attribute, read once
    by the shim), so a row costs one Python call.

    On the memo lane (native/memo.h) the shim instead hands over each distinct row's
    key arguments in chunks, add_rows([(key args), ...]), and after the result asks
    answers(): per row handed over, in order, its answer in a form C keeps (memo_form
    maps a list of cached answers, MISS included), or None. Answers are read from the
    cache, where the batches left them.
    """

    def __init__(self, engine: Engine, name: str, memo_form: Callable[[list], list]):
        self.engine = engine
        self.name = name
        self.sessions: dict = {}
        self.add: Callable[..., None] = _ignore
        self.add_rows: Callable[[list], None] = _ignore
        self.memo_form = memo_form
        # Per row add_rows received: the target name it was sent to (its answer comes back
        # in sending order), or its cache key (it had a fresh answer then), or None (a bad
        # row). Names, not keys, for the rows sent: a million keys would double the
        # memory the cache already holds for them.
        self.rows: list = []
        self.results: dict[str, list] = {}  # per lane session: its answers in sending order
        # Set where the server's deinit will call close() (bridge.prepare): only then may a
        # failure be kept for the rest of the statement (Engine.fail_target).
        self.closed_at_statement_end = False

    def lane(self, name: str, make: Callable[[], WarmUp]) -> WarmUp:
        """The memo lane's session for a target name: fed only by add_many, in order, so
        its answers come back in the order of the rows sent."""
        session = self.sessions.get(("lane", name))
        if session is None:
            session = self.sessions[("lane", name)] = make()
            session.results = self.results[name] = []
        return session

    def add_keys(self, keys: list, send: Callable[[str, list], None]) -> None:
        """add_rows' common part: the rows' cache keys; those without a fresh answer are
        sent, per target name (key[1]), by send(name, payloads)."""
        unanswered = self.engine.cache.unanswered(keys)
        self.rows += [key[1] if was_sent else key for key, was_sent in zip(keys, unanswered)]
        sending = list(compress(keys, unanswered))
        for name in {key[1] for key in sending}:  # one name, but for Comprehend in several languages
            send(name, [key[2] for key in sending if key[1] == name])

    def answers(self) -> list:
        rows, results = self.rows, self.results
        self.rows, self.results = [], {}
        sent = sum(1 for row in rows if type(row) is str)
        consistent = sent == sum(map(len, results.values()))  # cannot be otherwise; never guess
        if consistent and len(results) == 1 and sent == len(rows):  # every row sent, to one target
            return self.memo_form(next(iter(results.values())))
        peeked = self.engine.cache.peek_many([row if type(row) is tuple else None for row in rows])
        if not consistent:  # the rows sent get no answer: their reads ask Python
            return self.memo_form(peeked)
        ordered = {name: iter(answers) for name, answers in results.items()}
        return self.memo_form([next(ordered[row]) if type(row) is str else answer for row, answer in zip(rows, peeked)])

    def session(self, key, make: Callable[[], WarmUp]) -> WarmUp:
        session = self.sessions.get(key)
        if session is None:
            session = self.sessions[key] = make()
        return session

    def clear(self):
        self.sessions = {}
        self.rows, self.results = [], {}

    def __call__(self):
        """The group's result: the inputs sent. A failed batch has raised already under
        on_error = 'error'; under 'null' the warm-up still counts (so the README's
        `WHERE (SELECT sqlml_warm_...) >= 0` keeps every row), warns once, and each row's
        own read decides its NULL (engine/batch.py, failure rule)."""
        sent, error = 0, None
        for session in self.sessions.values():
            sent += session.finish()
            error = error or session.error
            if (session.stopped and session.error is not None and self.closed_at_statement_end
                    and self.engine.settings.on_error == "null"):
                self.engine.fail_target(session.target, session.error, self)
        self.sessions = {}
        self.engine.counters.add("warmup_cnt")
        if error is not None:
            _on_error(self.engine, error)
        return sent

    def close(self) -> None:
        """Statement end (the shim's aggregate deinit): the statement's failed targets go."""
        self.engine.forget_failures(self)


def _ignore(*_row):
    return None


def _sagemaker_memo_form(value):
    """A SageMaker answer as C keeps it: text, or a JSON number (MISS, objects: None)."""
    kind = type(value)
    if kind is str or kind is float:
        return value
    return str(value) if kind is int else None


def _sagemaker_memo_forms(values: list) -> list:
    return [value if type(value) is str else _sagemaker_memo_form(value) for value in values]


def _comprehend_memo_forms(values: list) -> list:
    return [(value.label_bytes, value.confidence) if type(value) is comprehend.Sentiment else None
            for value in values]


def prepare_warm_comprehend(engine: Engine, name: str, kind: int, types: tuple, consts: tuple) -> Prepared:
    n = len(types)
    if n not in (2, 3):
        raise ArgumentError(f"{name}: takes (text, language_code [, max_batch_size]); got {_plural(n, 'argument')}")
    if consts[1] is not None:
        comprehend.check_language(_text(consts[1], name, "language code"), name)
    batch_size = _const_int(consts[2], name, 2, "max_batch_size") if n == 3 else DEFAULT_COMPREHEND_BATCH
    agg = WarmAggregate(engine, name, _comprehend_memo_forms)
    languages: dict[bytes, str] = {}

    def admit(text, language):
        """The row's (language code, text) if it can be batched, else None: a bad row is
        not batched, its own call reports it by the on_error policy."""
        if text is None or language is None or not 0 < len(text) <= comprehend.MAX_TEXT_BYTES:
            return None
        code = languages.get(language)
        if code is None:
            try:
                code = comprehend.check_language(_text(language, name, "language code"), name)
            except SqlmlError:
                return None
            languages[language] = code
        try:
            return code, text.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def make(code: str) -> Callable[[], WarmUp]:
        return lambda: WarmUp(engine, ("comprehend", code), lambda texts: engine.send_sentiment(code, texts),
                              min(batch_size, comprehend.MAX_BATCH_TEXTS),
                              comprehend.MAX_BATCH_TEXTS * comprehend.MAX_TEXT_BYTES)

    def session(code: str) -> WarmUp:
        found = agg.sessions.get(code)
        return found if found is not None else agg.session(code, make(code))

    def add(text, language, _batch=None):
        admitted = admit(text, language)
        if admitted is not None:
            session(admitted[0]).add(admitted[1])

    def add_rows(rows):
        keys = []
        for text, language in rows:
            admitted = admit(text, language)
            keys.append(None if admitted is None else ("comprehend",) + admitted)
        agg.add_keys(keys, lambda code, texts: agg.lane(code, make(code)).add_many(texts))

    agg.add, agg.add_rows = add, add_rows
    return agg, 0, 0, (STRING, STRING, INT)[:n], _memo_spec(engine, COMPREHEND_TARGET, 0, 2)


def prepare_warm_sagemaker(engine: Engine, name: str, kind: int, types: tuple, consts: tuple) -> Prepared:
    n = len(types)
    if n < 3:
        raise ArgumentError(f"{name}: needs (endpoint, max_batch_size, arg1, ...); got {_plural(n, 'argument')}")
    endpoint = _const_endpoint(consts[0], name)
    batch_size = _const_int(consts[1], name, 1, "max_batch_size")
    line_of = _line_encoder(tuple(_encoder(t, name, i + 2) for i, t in enumerate(types[2:])))
    agg = WarmAggregate(engine, name, _sagemaker_memo_forms)

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

    encode = _encoder(types[2], name, 2) if len(types) == 3 else None

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

    # The memo lane: rows arrive a chunk at a time, each as its CSV line when every
    # feature is a number C writes exactly as _encode_int/_encode_real would (csv_lines
    # in the spec; sqlml_udf.c warm_row), else as the tuple of its features.
    numeric = all(t in (INT, REAL) for t in types[2:])
    encode_row = (lambda row: encode(row[0])) if len(types) == 3 else line_of

    def line(row) -> str | None:
        if type(row) is str:
            return row
        try:
            return encode_row(row)
        except SqlmlError:
            return None

    def add_rows(rows):
        agg.add_keys([None if text is None else ("sagemaker", endpoint, text) for text in map(line, rows)],
                     lambda _name, lines: agg.lane(endpoint, make).add_many(lines))

    agg.add = add1 if len(types) == 3 else add
    agg.add_rows = add_rows
    spec = _memo_spec(engine, _sagemaker_target(endpoint), 2, n - 2, csv_lines=numeric)
    return agg, 0, 0, (STRING, INT) + tuple(types[2:]), spec


def prepare_cache_clear(engine, name, kind, types, consts):
    if types:
        raise ArgumentError(f"{name}: takes no arguments")
    return engine.cache.clear, 0, 0, ()


# ---- introspection and diagnostics ----------------------------------------------


def version_text() -> str:
    import boto3

    return (f"sqlml {__version__} (library {server.library_version()}, engine {__version__}, "
            f"Python {platform.python_version()}, boto3 {boto3.__version__}, "
            f"{support.server_note(server.flavor(), server.version(), server.abi_problem())})")


def prepare_version(engine, name, kind, types, consts):
    if types:
        raise ArgumentError(f"{name}: takes no arguments")
    text = version_text().encode()
    return (lambda: text), len(text), 31, ()


def prepare_status(engine, name, kind, types, consts):
    if types:
        raise ArgumentError(f"{name}: takes no arguments")

    # The counters are public (SHOW GLOBAL STATUS shows them to anyone); the settings
    # (role ARNs, endpoint URLs) and which endpoints were called how often only to whom
    # the server lets change global variables (access.ADMIN_PRIVILEGES).
    admin = access.is_admin()

    def row():
        flush_all()
        snap = engine.counters.snapshot()
        snap["cache"] = engine.cache.stats()
        if admin:
            snap["settings"] = {k: v for k, v in engine.settings.__dict__.items()}
            snap["settings_error"] = engine.reload_error
        else:
            del snap["targets"]
            snap["details"] = (f"settings and per-endpoint figures need "
                               f"{access.admin_privileges_text()}")
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
    "sqlml_cache_clear": (INT, prepare_cache_clear, (access.ADMIN,)),
}


# Functions that also need each argument's name as written in the query.
NAMED_REGISTRY: dict[str, tuple[int, Callable[..., Prepared]]] = {
    export.FUNCTION: (STRING, export.prepare),
}


def prepare(engine: Engine, name: str, kind: int, types: tuple, consts: tuple, names: tuple = ()) -> Prepared:
    abi_problem = server.abi_problem()
    if abi_problem is not None and name != "sqlml_version":  # fail closed; the version says why
        raise ArgumentError(support.abi_refusal(name, abi_problem))
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
        elif services != (access.ADMIN,):  # it calls a service: replicas would answer differently
            error = access.binlog_refusal(name)
        if error is not None:  # and no memo lane: every row meets the refusal
            return (access.Refused(error),) + tuple(prepared[1:4])
    return prepared
