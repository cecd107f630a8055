"""Comprehend: aws_comprehend_detect_sentiment[_confidence](text, language[, max_batch_size])."""

from __future__ import annotations

from typing import Callable

from ...crossing import MEMO_CONFIDENCE, MEMO_LABEL, NOT_FIXED_DEC, Prepared
from ...errors import ArgumentError, SqlmlError
from ...services import comprehend
from .. import Engine
from ..cache import MISS
from ..plans import Bind
from ..tally import Tally
from .common import (COMPREHEND_TARGET, DEFAULT_COMPREHEND_BATCH, FLUSH_MASK, INT, STRING, apply_on_error, as_text,
                     const_int, memo_spec, plural)


def _plan_sentiment(engine: Engine, name: str, kind: int, types: tuple, consts: tuple, want: str) -> Bind:
    """Checks the call once; the bind returned makes one statement's Prepared
    (engine/plans.py keeps it)."""
    n = len(types)
    if n not in (2, 3):
        raise ArgumentError(f"{name}: takes (text, language_code [, max_batch_size]); got {plural(n, 'argument')}")
    if consts[1] is not None:
        comprehend.check_language(as_text(consts[1], name, "language code"), name)
    if n == 3 and consts[2] is not None:
        # max_batch_size bounds the batch path; the scalar path only validates it.
        const_int(consts[2], name, 2, "max_batch_size")
    coerce = (STRING, STRING, INT)[:n]
    spec = memo_spec(engine, COMPREHEND_TARGET, 0, 2, MEMO_LABEL if want == "label" else MEMO_CONFIDENCE)
    max_length = 8 if kind == STRING else 0

    def bind() -> Prepared:
        # Per statement: the language codes seen and the tally its own thread bumps
        # (made at the first hit, as in sagemaker.py).
        languages: dict[bytes, str] = {}
        senders: dict[tuple[str, int], Callable] = {}  # engine.sentimenter per (language, max_batch_size)
        cache_get = engine.cache.get
        tally = None

        def row(text, language, max_batch_size=None):
            nonlocal tally
            if text is None or language is None:
                return None
            try:
                code = languages.get(language)
                if code is None:
                    code = comprehend.check_language(as_text(language, name, "language code"), name)
                    languages[language] = code
                if max_batch_size is not None and max_batch_size <= 0:
                    raise ArgumentError(f"{name}: 3rd argument (max_batch_size) must be > 0, got {max_batch_size}")
                value = as_text(text, name, "text")
                if not 0 < len(text) <= comprehend.MAX_TEXT_BYTES:  # text is the UTF-8 bytes
                    comprehend.check_text(value, name)
                result = cache_get(("comprehend", code, value))
                if result is MISS:
                    batch = max_batch_size or DEFAULT_COMPREHEND_BATCH
                    send = senders.get((code, batch))
                    if send is None:
                        if len(senders) >= 64:  # max_batch_size varying by row: never a growing map
                            senders.clear()
                        send = senders[(code, batch)] = engine.sentimenter(code, batch)
                    result = send(value)
                else:  # counted in bulk (engine/tally.py)
                    if tally is None:
                        tally = Tally(engine.counters)
                    tally.hits += 1
                    if not tally.hits & FLUSH_MASK:
                        tally.flush()
            except SqlmlError as exc:
                return apply_on_error(engine, exc)
            return result.label_bytes if want == "label" else result.confidence

        return Prepared(row, max_length, NOT_FIXED_DEC, coerce, spec)

    return bind


def plan_sentiment(engine, name, kind, types, consts) -> Bind:
    return _plan_sentiment(engine, name, kind, types, consts, "label")


def plan_confidence(engine, name, kind, types, consts) -> Bind:
    return _plan_sentiment(engine, name, kind, types, consts, "confidence")


def prepare_sentiment(engine, name, kind, types, consts) -> Prepared:
    return plan_sentiment(engine, name, kind, types, consts)()


def prepare_confidence(engine, name, kind, types, consts) -> Prepared:
    return plan_confidence(engine, name, kind, types, consts)()
