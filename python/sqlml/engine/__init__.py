"""The engine: settings, the service clients, the dispatcher and the counters.

One Engine per server process, built by bridge.boot(). Functions (functions.py) ask
it for answers; it turns them into requests and keeps count. This is where batching,
coalescing and the result cache attach (the batching-engine issue).
"""

from __future__ import annotations

import os
import threading
import time

from .. import config
from ..config import Settings
from ..services import comprehend, sagemaker
from ..services.aws import Clients
from .counters import Counters
from .dispatch import Dispatcher

RELOAD_CHECK_S = 1.0


class Engine:
    def __init__(self, cnf_path: str | None, settings: Settings | None = None):
        self.cnf_path = cnf_path
        self.settings = settings or config.load(cnf_path)
        self.counters = Counters()
        self.clients = Clients(self.settings)
        self.dispatcher = Dispatcher(self.settings, self.counters)
        self._cnf_mtime = self._mtime()
        self._next_check = time.monotonic() + RELOAD_CHECK_S
        self._reload_lock = threading.Lock()
        self.reload_error: str | None = None

    def _mtime(self) -> float | None:
        try:
            return os.stat(self.cnf_path).st_mtime if self.cnf_path else None
        except OSError:
            return None

    def maybe_reload(self) -> None:
        """Re-reads sqlml.cnf if it changed; called at statement start, cheap otherwise."""
        now = time.monotonic()
        if now < self._next_check or not self._reload_lock.acquire(blocking=False):
            return
        try:
            self._next_check = now + RELOAD_CHECK_S
            mtime = self._mtime()
            if mtime == self._cnf_mtime:
                return
            self._cnf_mtime = mtime
            try:
                settings = config.load(self.cnf_path)
            except (OSError, ValueError) as exc:
                # Keep running on the last good settings; sqlml_status() shows why.
                self.reload_error = f"{self.cnf_path}: {exc}"
                return
            self.reload_error = None
            self.apply(settings)
        finally:
            self._reload_lock.release()

    def apply(self, settings: Settings) -> None:
        self.clients.update(settings)
        self.dispatcher.update(settings)
        self.settings = settings

    # ---- answers -------------------------------------------------------------

    def sentiment(self, text: str, language: str) -> comprehend.Sentiment:
        """The sentiment of one text (a scalar call: one row, one request)."""
        self.counters.add("logical_request_cnt")
        self.counters.add("single_request_cnt")
        client = self.clients.get("comprehend")
        result = self.dispatcher.call(
            lambda: comprehend.detect(client, [text], language),
            ("comprehend", language), 1, f"Comprehend DetectSentiment ({language})",
        )[0]
        if isinstance(result, Exception):
            raise result
        self.counters.add("logical_response_cnt")
        return result

    def invoke(self, endpoint: str, line: str) -> object:
        """The first output for one CSV row from a SageMaker endpoint."""
        self.counters.add("logical_request_cnt")
        self.counters.add("single_request_cnt")
        client = self.clients.get("sagemaker-runtime")
        accept = self.settings.sagemaker_accept
        result = self.dispatcher.call(
            lambda: sagemaker.invoke(client, endpoint, [line], accept),
            ("sagemaker", endpoint), 1, f"SageMaker InvokeEndpoint (endpoint '{endpoint}')",
        )[0]
        self.counters.add("logical_response_cnt")
        return result
