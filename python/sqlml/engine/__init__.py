"""The engine: settings, service clients, dispatcher, result cache, coalescers, counters.

One Engine per server process, built by bridge.boot(). SQL functions (functions/)
ask it for answers by input; it answers from the cache, or sends the input in a shared
request (coalesce.py: concurrent scalar calls), or a warm-up (warmup.py) has already
sent it in a pipelined batch. Every answer that arrives is cached under its own input,
and every row reads its answer by its own input: a result is never bound by position.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable

from .. import config, host
from ..config import Settings
from ..errors import ServiceError, SqlmlError
from ..services import comprehend, sagemaker
from ..services.aws import Clients
from ..services.lean import NoIdleConnection
from .cache import ResultCache
from .coalesce import Coalescer
from .counters import Counters
from .dispatch import Dispatcher, NotSent
from .plans import PlanCache
from .tally import InlineTally

# How often, at most, statements look at sqlml.cnf for a change (docs/configuration.md:
# "re-read within a second of a change").
CNF_CHECK_S = 0.25


class _ThreadFailures(threading.local):
    """Per server thread, the targets its statement's warm-up found failing. None until
    the first: a class default, so the scalar path's read per row finds it without the
    AttributeError (and its formatted message) a missing attribute raises."""

    targets: dict | None = None


class Engine:
    def __init__(self, cnf_path: str | None, settings: Settings | None = None):
        self.cnf_path = cnf_path
        self._variables_generation, variables = host.system_variables()
        self.reload_error: str | None = None
        self.settings = settings or self._first_settings(variables)
        # Moves after every apply(): the kept per-statement plans (plans.py) are keyed
        # by it, so none built under older settings is used again.
        self.settings_version = 0
        self.plans = PlanCache()
        self.counters = Counters()
        self.clients = Clients(self.settings)
        self.dispatcher = Dispatcher(self.settings, self.counters)
        self._count_logical_request = self.counters.incrementer("logical_request_cnt")
        self._count_logical_response = self.counters.incrementer("logical_response_cnt")
        self._count_single_request = self.counters.incrementer("single_request_cnt")
        self.cache = ResultCache(1, 1, 1.0)
        self._configure_cache(self.settings)
        self._coalescers: dict[tuple[str, str], Coalescer] = {}
        self._coalescers_lock = threading.Lock()
        self._cnf_mtime = self._mtime()
        self._next_cnf_check = 0.0  # time.monotonic() after which maybe_reload stats sqlml.cnf again
        self._reload_lock = threading.Lock()
        # Per server thread (so per connection and its running statement): targets whose
        # warm-up this statement found failing, {target: (message, code, owner)}.
        self._failures = _ThreadFailures()

    # ---- settings --------------------------------------------------------------

    def _mtime(self) -> float | None:
        try:
            return os.stat(self.cnf_path).st_mtime if self.cnf_path else None
        except OSError:
            return None

    def _first_settings(self, variables: dict) -> Settings:
        """The settings at boot. A bad sqlml.cnf or variable must not stop every function:
        without the file, then the defaults, and sqlml_status() and the log say why."""
        try:
            return config.load(self.cnf_path, variables=variables)
        except (OSError, ValueError) as exc:
            self._settings_refused(exc)
        try:
            return config.load(None, variables=variables)
        except (OSError, ValueError):
            return Settings()

    def _settings_refused(self, exc: Exception) -> None:
        self.reload_error = f"{self.cnf_path}: {exc}" if str(self.cnf_path) not in str(exc) else str(exc)
        print(f"sqlml: settings not applied, keeping the last good ones: {self.reload_error}", file=sys.stderr,
              flush=True)

    def maybe_reload(self) -> None:
        """Re-reads the settings if sqlml.cnf or a system variable changed; called at
        statement start, cheap otherwise (a SET GLOBAL is seen at the next statement,
        an edited sqlml.cnf within CNF_CHECK_S)."""
        variables_moved = host.settings_generation() != self._variables_generation
        if not variables_moved:
            # sqlml.cnf is looked at (a stat()) at most every CNF_CHECK_S, not on every
            # statement: a client sending one statement per row paid a system call each.
            now = time.monotonic()
            if now < self._next_cnf_check:
                return
            self._next_cnf_check = now + CNF_CHECK_S
            if self._mtime() == self._cnf_mtime:
                return
        if not self._reload_lock.acquire(blocking=variables_moved):
            return
        try:
            mtime = self._mtime()
            if mtime == self._cnf_mtime and not variables_moved:
                return
            self._cnf_mtime = mtime
            self._variables_generation, variables = host.system_variables()
            try:
                settings = config.load(self.cnf_path, variables=variables)
            except (OSError, ValueError) as exc:
                # Keep running on the last good settings; sqlml_status() and the log say why.
                self._settings_refused(exc)
                return
            self.reload_error = None
            self.apply(settings)
        finally:
            self._reload_lock.release()

    def apply(self, settings: Settings) -> None:
        self.clients.update(settings)
        self.dispatcher.update(settings)
        self._configure_cache(settings)
        self.settings = settings
        self.settings_version += 1  # after the settings are in place (plans.py, _key)

    def _configure_cache(self, s: Settings) -> None:
        self.cache.configure(s.cache_max_entries, s.cache_max_mb * 1024 * 1024, s.cache_ttl_s, s.cache_enabled)

    # ---- sending (on worker threads) ---------------------------------------------

    def send_sentiment(self, language: str, texts: list[str]) -> list:
        """One request per 25 texts; caches each answer; returns a Sentiment or error per text."""
        client = self.clients.get("comprehend")
        target = ("comprehend", language)
        out: list = []
        for i in range(0, len(texts), comprehend.MAX_BATCH_TEXTS):
            chunk = texts[i:i + comprehend.MAX_BATCH_TEXTS]
            results = self.dispatcher.attempts(lambda chunk=chunk: comprehend.detect(client, chunk, language), target,
                                               len(chunk), self.dispatcher.deadline())
            ok = [(text, result) for text, result in zip(chunk, results, strict=True)
                  if not isinstance(result, Exception)]
            self.cache.put_payloads("comprehend", language, [text for text, _ in ok], [result for _, result in ok])
            out.extend(results)
        self._count_batch(len(texts))
        return out

    def send_invoke(self, endpoint: str, lines: list[str]) -> list:
        """As few requests as the 6 MB body limit allows; caches each row's first output."""
        client = self.clients.get("sagemaker-runtime")
        accept = self.settings.sagemaker_accept
        target = ("sagemaker", endpoint)
        out: list = []
        for chunk in _chunks_by_bytes(lines, sagemaker.MAX_BODY_BYTES):
            results = self.dispatcher.attempts(lambda chunk=chunk: sagemaker.invoke(client, endpoint, chunk, accept),
                                               target, len(chunk), self.dispatcher.deadline())
            self.cache.put_payloads("sagemaker", endpoint, chunk, results)
            out.extend(results)
        self._count_batch(len(lines))
        return out

    def _count_batch(self, rows: int) -> None:
        if rows == 1:
            self._count_single_request()
        else:
            self.counters.add("batched_row_cnt", rows)

    # ---- a statement's failed targets (engine/warmup.py, failure rule) -----------------

    def fail_target(self, target: tuple[str, str], error: SqlmlError, owner: object) -> None:
        """Until owner (a warm-up of the calling statement) ends, this thread's calls for
        target that the cache cannot answer fail at once with error, without a request."""
        failures = self._failures.targets
        if failures is None:
            failures = self._failures.targets = {}
        failures[target] = (error.sql_message, getattr(error, "code", ""), owner)

    def forget_failures(self, owner: object) -> None:
        failures = self._failures.targets
        if failures:
            for target in [t for t, (_, _, o) in failures.items() if o is owner]:
                del failures[target]

    def statement_failure(self, target: tuple[str, str]) -> ServiceError | None:
        failures = self._failures.targets
        found = failures.get(target) if failures else None
        return None if found is None else ServiceError(found[0], code=found[1])

    # ---- answers for one row (scalar calls) ------------------------------------------

    def _coalescer(self, target: tuple[str, str]) -> Coalescer:
        c = self._coalescers.get(target)
        if c is None:
            with self._coalescers_lock:
                c = self._coalescers.get(target)
                if c is None:
                    service, name = target
                    send = ((lambda texts: self.send_sentiment(name, texts)) if service == "comprehend"
                            else (lambda lines: self.send_invoke(name, lines)))
                    c = self._coalescers[target] = Coalescer(send, self.dispatcher.spawn)
        return c

    def _answer(self, key: tuple, target: tuple[str, str], payload: str, max_batch_size: int, where: str,
                request_one: Callable, tally: InlineTally | None = None):
        """The answer for a row whose caller found none in the cache (functions/ look it up
        and count their hits in bulk): a second lookup here would only cost a lock and a
        key per request. request_one(client, payload, wait) sends it alone; tally, if
        given, counts it if it is answered so."""
        self._count_logical_request()
        failed = self.statement_failure(target)
        if failed is not None:
            raise failed
        deadline = self.dispatcher.deadline()
        try:
            value = self._send_alone(key, target, payload, deadline, where, request_one, tally)
        except NotSent:
            value = self._send_shared(target, payload, max_batch_size, deadline, where)
        self._count_logical_response()
        return value

    def _send_alone(self, key: tuple, target: tuple[str, str], payload: str, deadline: float, where: str,
                    request_one: Callable, tally: InlineTally | None):
        """A call no other connection's could share a request with (its coalescer idle and
        no other caller recent, or coalescing off) is sent from this thread over a
        kept-alive connection (dispatch.attempt_inline); NotSent if it cannot be."""
        settings = self.settings
        if settings.coalesce and (settings.coalesce_linger_ms or not self._coalescer(target).alone()):
            raise NotSent()
        client = self.clients.get("comprehend" if target[0] == "comprehend" else "sagemaker-runtime")
        if not client.can_send_inline():
            raise NotSent()
        value = self.dispatcher.attempt_inline(request_one, target, deadline, where, NoIdleConnection, tally,
                                               (client, payload))
        self.cache.put_payloads(key[0], key[1], [key[2]], [value])
        self._count_single_request()
        return value

    def _send_shared(self, target: tuple[str, str], payload: str, max_batch_size: int, deadline: float, where: str):
        """Through the target's coalescer (or alone on a worker with coalescing off)."""
        if self.settings.coalesce:
            future = self._coalescer(target).call(payload, max_batch_size, self.settings.coalesce_linger_ms / 1000.0)
        else:  # one request per call: the baseline the benchmarks compare against
            send = self.send_sentiment if target[0] == "comprehend" else self.send_invoke
            future = self.dispatcher.spawn(lambda: _raise_item(send(target[1], [payload])[0]))
        return self.dispatcher.wait(future, deadline, target, where)

    # For a row the cache had no answer for (see _answer): the sentiment of a text, the
    # first output of an endpoint for a CSV line. sentimenter() and invoker() give one
    # statement's caller the same call with its constant arguments bound, and what
    # depends on them alone (target, path, messages) made once, not per row; from its
    # second request on, the statement's answered inline requests are counted in bulk
    # (engine/tally.py: a statement of one row never makes a tally).

    def sentiment(self, text: str, language: str, max_batch_size: int = 25) -> comprehend.Sentiment:
        return self.sentimenter(language, max_batch_size)(text)

    def sentimenter(self, language: str, max_batch_size: int = 25) -> Callable[[str], comprehend.Sentiment]:
        def request_one(client, text: str, wait):
            return _raise_item(comprehend.detect(client, [text], language, wait)[0])

        return self._statement_sender(("comprehend", language), min(max_batch_size, comprehend.MAX_BATCH_TEXTS),
                                      f"Comprehend DetectSentiment ({language})", request_one)

    def invoke(self, endpoint: str, line: str, max_batch_size: int) -> object:
        return self.invoker(endpoint, max_batch_size)(line)

    def invoker(self, endpoint: str, max_batch_size: int) -> Callable[[str], object]:
        where = sagemaker.where(endpoint)
        made: list = [None, None, None]  # the client and Accept the request shape was made for, the shape

        def request_one(client, line: str, wait):
            accept = self.settings.sagemaker_accept
            if made[0] is not client or made[1] != accept:  # new settings
                made[:] = client, accept, sagemaker.shape(client, endpoint, accept)
            return sagemaker.invoke_one(client, made[2], line, where, wait)

        return self._statement_sender(("sagemaker", endpoint), max_batch_size, where, request_one)

    def _statement_sender(self, target: tuple[str, str], max_batch_size: int, where: str,
                          request_one: Callable) -> Callable[[str], object]:
        """_answer for one statement's payloads to target; from its second request on, the
        requests it answers inline are counted in its own InlineTally."""
        service, name = target
        tally = None
        sent = False

        def send(payload: str):
            nonlocal tally, sent
            if sent and tally is None:  # a second request: the statement has rows to come
                tally = InlineTally(self.counters, target)
            sent = True
            return self._answer((service, name, payload), target, payload, max_batch_size, where, request_one, tally)

        return send


def _raise_item(result):
    if isinstance(result, BaseException):
        raise result
    return result


def _chunks_by_bytes(lines: list[str], limit: int):
    if (sum(map(len, lines)) + len(lines)) * 4 <= limit:  # fits even at 4 UTF-8 bytes a character
        yield lines
        return
    chunk, size = [], 0
    for line in lines:
        n = (len(line) if line.isascii() else len(line.encode("utf-8"))) + 1
        if chunk and size + n > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(line)
        size += n
    if chunk:
        yield chunk


__all__ = ["Engine", "ServiceError"]
