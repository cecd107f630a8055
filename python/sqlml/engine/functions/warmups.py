"""The warm-ups of the SQL-only batch path: aggregates that send a statement's distinct
inputs in batches before its reading functions ask (engine/warmup.py)."""

from __future__ import annotations

from array import array
from itertools import compress
from typing import Callable

from ...crossing import Prepared
from ...errors import ArgumentError, SqlmlError
from ...services import comprehend, sagemaker
from .. import Engine
from ..warmup import AnswerList, WarmUp
from .common import (COMPREHEND_TARGET, DEFAULT_COMPREHEND_BATCH, INT, REAL, STRING, apply_on_error, as_text,
                     const_int, memo_spec, plural, sagemaker_target)
from .sagemaker import const_endpoint, encoder, line_encoder


class WarmAggregate:
    """An aggregate that sends a query's distinct inputs in batches into the cache.

    The shim calls clear() at each group's start, add(*row) per row, and the object
    itself for the group's result: the number of inputs it sent. `add` is the
    function-specific closure given at construction (an instance attribute, read once
    by the shim), so a row costs one Python call.

    On the memo lane (native/memo.h) the shim instead hands over each distinct row's
    key arguments in chunks, add_rows([(key args), ...]), and after the result asks
    answers(): per row handed over, in order, its answer in a form C keeps (memo_form
    maps a list of cached answers, MISS included), or None; or, when every answer is
    a float or every one a str, AnswerList's compact form of them. add_rows returns
    the answers that came back meanwhile for the first rows still without one (ready),
    so that they wait in C, not here; answers() gives the rest. Answers are read from the
    cache, where the batches left them.
    """

    def __init__(self, engine: Engine, name: str, memo_form: Callable[[list | array | tuple], list | array | tuple],
                 compact_answers: bool = False):
        self.engine = engine
        self.name = name
        self.sessions: dict = {}
        self.add: Callable[..., None] = _ignore
        self.add_rows: Callable[[list], None] = _ignore
        self.memo_form = memo_form
        self.compact_answers = compact_answers  # memo_form takes AnswerList's compact forms
        # Per row add_rows received: the target name it was sent to (its answer comes back
        # in sending order), or its cache key (it had a fresh answer then), or None (a bad
        # row). Names, not keys, for the rows sent: a million keys would double the
        # memory the cache already holds for them.
        self.rows: list = []
        # ... but while every row so far was sent to one name, only that name and their
        # number (a million rows, the usual case: 8 MB less at the statement's peak).
        self.run_name: str | None = None
        self.run_n = 0
        self.results: dict[str, AnswerList] = {}  # per lane session: its answers in sending order
        self.handed = 0  # the first rows, whose answers add_rows gave back (ready)
        # Set where the server's deinit will call close() (bridge.prepare): only then may a
        # failure be kept for the rest of the statement (Engine.fail_target).
        self.closed_at_statement_end = False

    def lane(self, name: str, make: Callable[[], WarmUp]) -> WarmUp:
        """The memo lane's session for a target name: fed only by add_many, in order, so
        its answers come back in the order of the rows sent."""
        session = self.sessions.get(("lane", name))
        if session is None:
            session = self.sessions[("lane", name)] = make()
            session.results = self.results[name] = AnswerList(self.compact_answers)
        return session

    def add_payloads(self, service: str, name: str, payloads: list, send: Callable[[str, list], None]) -> None:
        """add_keys() for rows of one target, given by their payloads (None: a row not
        batched). While every row so far was sent, no key tuple is made per row."""
        unanswered = self.engine.cache.unanswered_payloads(service, name, payloads)
        if payloads and all(unanswered) and self._join_run(name, len(payloads)):
            send(name, payloads)
            return
        self.add_keys([None if p is None else (service, name, p) for p in payloads], send, unanswered)

    def _join_run(self, name: str, n: int) -> bool:
        """Whether n more rows, all sent to name, join the run of rows all sent to one name
        (self.run_name, self.run_n): only while no row so far was otherwise."""
        if self.rows or (self.run_name is not None and name != self.run_name):
            return False
        self.run_name = name
        self.run_n += n
        return True

    def add_keys(self, keys: list, send: Callable[[str, list], None], unanswered: list[bool] | None = None) -> None:
        """add_rows' common part: the rows' cache keys; those without a fresh answer
        (given, or looked up here) are sent, per target name (key[1]), by send(name, payloads)."""
        if unanswered is None:
            unanswered = self.engine.cache.unanswered(keys)
        rows = [key[1] if was_sent else key for key, was_sent in zip(keys, unanswered, strict=True)]
        if rows and all(unanswered) and rows.count(rows[0]) == len(rows) and self._join_run(rows[0], len(rows)):
            rows = []
        if rows and self.run_n:  # the run ends: its rows become entries again
            self.rows = [self.run_name] * self.run_n
            self.run_name, self.run_n = None, 0
        self.rows += rows
        sending = list(compress(keys, unanswered))
        for name in {key[1] for key in sending}:  # one name, but for Comprehend in several languages
            send(name, [key[2] for key in sending if key[1] == name])

    def ready(self) -> list | array | tuple | None:
        """The answers that came back for the first rows without one given yet, in
        memo_form, or None. Only while every row so far was sent to one name: the
        answers then come in the rows' order."""
        if not self.run_n or self.rows or len(self.results) != 1:
            return None
        answers = self.results.get(self.run_name)
        if answers is None or not len(answers):
            return None
        self.handed += len(answers)
        return self.memo_form(answers.take())

    def answers(self) -> list | array | tuple:
        """The answers of the rows handed over, after those ready() gave."""
        rows, results, run_name, run_n, handed = self.rows, self.results, self.run_name, self.run_n, self.handed
        self.rows, self.results, self.run_name, self.run_n, self.handed = [], {}, None, 0, 0
        if run_n:  # every row sent, to one name
            if len(results) == 1 and len(next(iter(results.values()))) == run_n - handed:
                return self.memo_form(next(iter(results.values())).form())
            rows = [run_name] * run_n  # cannot be otherwise, but never guess: the general way
        if handed:  # those rows' answers went back with add_rows: the results hold the later ones
            rows = rows[handed:]
        sent = sum(1 for row in rows if type(row) is str)
        consistent = sent == sum(map(len, results.values()))  # cannot be otherwise; never guess
        if consistent and len(results) == 1 and sent == len(rows):  # every row sent, to one target
            return self.memo_form(next(iter(results.values())).form())
        peeked = self.engine.cache.peek_many([row if type(row) is tuple else None for row in rows])
        if not consistent:  # the rows sent get no answer: their reads ask Python
            return self.memo_form(peeked)
        ordered = {name: iter(answers) for name, answers in results.items()}
        return self.memo_form([next(ordered[row]) if type(row) is str else answer
                               for row, answer in zip(rows, peeked, strict=True)])

    def session(self, key, make: Callable[[], WarmUp]) -> WarmUp:
        session = self.sessions.get(key)
        if session is None:
            session = self.sessions[key] = make()
        return session

    def clear(self):
        self.sessions = {}
        self.rows, self.results, self.run_name, self.run_n, self.handed = [], {}, None, 0, 0

    def __call__(self):
        """The group's result: the inputs sent. A failed batch has raised already under
        on_error = 'error'; under 'null' the warm-up still counts (so docs/sql.md's
        `WHERE (SELECT sqlml_warm_...) >= 0` keeps every row), warns once, and each row's
        own read decides its NULL (engine/warmup.py, failure rule)."""
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
            apply_on_error(self.engine, error)
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


def _sagemaker_memo_forms(values: list | array | tuple) -> list | array | tuple:
    """In place: values is the warm-up's own list of answers, and a copy would be 8 MB
    more per million rows at the statement's peak. AnswerList's compact forms (an array
    of doubles, a (text, ends) pair) are C's as they are."""
    if type(values) is not list:
        return values
    for i, value in enumerate(values):
        kind = type(value)
        if kind is not float and kind is not str:
            values[i] = _sagemaker_memo_form(value)
    return values


def _comprehend_memo_forms(values: list) -> list:
    return [(value.label_bytes, value.confidence) if type(value) is comprehend.Sentiment else None
            for value in values]


def prepare_warm_comprehend(engine: Engine, name: str, kind: int, types: tuple, consts: tuple) -> Prepared:
    n = len(types)
    if n not in (2, 3):
        raise ArgumentError(f"{name}: takes (text, language_code [, max_batch_size]); got {plural(n, 'argument')}")
    if consts[1] is not None:
        comprehend.check_language(as_text(consts[1], name, "language code"), name)
    batch_size = const_int(consts[2], name, 2, "max_batch_size") if n == 3 else DEFAULT_COMPREHEND_BATCH
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
                code = comprehend.check_language(as_text(language, name, "language code"), name)
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
        return agg.ready()

    agg.add, agg.add_rows = add, add_rows
    return Prepared(agg, 0, 0, (STRING, STRING, INT)[:n], memo_spec(engine, COMPREHEND_TARGET, 0, 2))


def prepare_warm_sagemaker(engine: Engine, name: str, kind: int, types: tuple, consts: tuple) -> Prepared:
    n = len(types)
    if n < 3:
        raise ArgumentError(f"{name}: needs (endpoint, max_batch_size, arg1, ...); got {plural(n, 'argument')}")
    endpoint = const_endpoint(consts[0], name)
    batch_size = const_int(consts[1], name, 1, "max_batch_size")
    line_of = line_encoder(tuple(encoder(t, name, i + 2) for i, t in enumerate(types[2:])))
    agg = WarmAggregate(engine, name, _sagemaker_memo_forms, compact_answers=True)

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

    encode = encoder(types[2], name, 2) if len(types) == 3 else None

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
        agg.add_payloads("sagemaker", endpoint, list(map(line, rows)),
                         lambda _name, lines: agg.lane(endpoint, make).add_many(lines))
        return agg.ready()

    agg.add = add1 if len(types) == 3 else add
    agg.add_rows = add_rows
    spec = memo_spec(engine, sagemaker_target(endpoint), 2, n - 2, csv_lines=numeric)
    return Prepared(agg, 0, 0, (STRING, INT) + tuple(types[2:]), spec)
