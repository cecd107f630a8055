"""Fake Amazon Comprehend + SageMaker Runtime (stdlib only): FakeAWS runs one in this
process, FakeAWSControl drives one in another over its control API. See
tests/doubles/fakeaws/__init__.py for the overview."""

import copy
import json
import threading
import urllib.error
import urllib.request

from .handler import _Server
from .state import _State

# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------


class _ControlMixin:
    """Control methods shared by FakeAWS (in-process) and FakeAWSControl (HTTP)."""

    def _control(self, action, payload=None):  # pragma: no cover - abstract
        raise NotImplementedError

    # configuration ----------------------------------------------------
    def configure(self, **settings):
        """Change settings (see DEFAULT_CONFIG); returns the whole config."""
        return self._control("config", settings) if settings else self.get_config()

    def get_config(self):
        return self._control("config", {})

    # faults -----------------------------------------------------------
    def inject(self, kind, count=1, **spec):
        """Arm a fault rule; returns its id. count=None means 'forever'.

        kind: error | disconnect | hang | malformed | short | extra
        match: service ('comprehend'|'sagemaker'), operation, endpoint (fnmatch
        pattern), skip (let that many matching requests pass first).
        error: code, status, message, original_status (ModelError only).
        hang: seconds. malformed: body (str/bytes; default garbage).
        """
        spec["kind"] = kind
        spec["count"] = count
        if isinstance(spec.get("body"), bytes):
            spec["body"] = spec["body"].decode("utf-8")
        return self._control("inject", spec)["id"]

    def fail_next(self, n=1, code=None, status=None, message=None, **match):
        return self.inject("error", n, code=code, status=status, message=message, **match)

    def malformed_next(self, n=1, body=None, **match):
        return self.inject("malformed", n, body=body, **match)

    def short_next(self, n=1, **match):
        return self.inject("short", n, **match)

    def extra_next(self, n=1, **match):
        return self.inject("extra", n, **match)

    def hang_next(self, n=1, seconds=30.0, **match):
        return self.inject("hang", n, seconds=seconds, **match)

    def disconnect_next(self, n=1, **match):
        return self.inject("disconnect", n, **match)

    def faults(self):
        return self._control("faults")["faults"]

    def clear_faults(self):
        self._control("clear_faults")

    # stats ------------------------------------------------------------
    def stats(self, log=True):
        return self._control("stats", {"log": log})

    def clear_stats(self):
        self._control("clear_stats")

    def reset(self):
        """Clear stats and faults and restore the initial configuration."""
        self._control("reset")

    def health(self):
        return self._control("health")

    # convenience ------------------------------------------------------
    def client(self, service_name, region_name="us-east-1", **config_kwargs):
        """A boto3 client for 'comprehend' or 'sagemaker-runtime' aimed at the fake."""
        import boto3
        from botocore.config import Config

        # NB: botocore's retries max_attempts counts RETRIES; total_max_attempts=1 means no retry
        config_kwargs.setdefault("retries", {"mode": "standard", "total_max_attempts": 1})
        return boto3.client(
            service_name,
            endpoint_url=self.url,
            region_name=region_name,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            aws_session_token="testing",
            config=Config(**config_kwargs),
        )


class FakeAWS(_ControlMixin):
    """In-process fake: ``with FakeAWS() as fake: ... fake.url ...``."""

    def __init__(self, port=0, host="127.0.0.1", idle_timeout=120.0, verbose=False, **settings):
        self.host = host
        self.port = port
        self.idle_timeout = idle_timeout
        self.verbose = verbose
        self._state = _State(settings)
        self._server = None
        self._thread = None

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def start(self):
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self._state, self.idle_timeout, self.verbose)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fakeaws", daemon=True
        )
        self._thread.start()
        return self

    def stop(self):
        server, self._server = self._server, None
        if server is None:
            return
        self._state._wake()
        server.shutdown()
        server.server_close()
        server.close_all_connections()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _control(self, action, payload=None):
        return copy.deepcopy(self._state.dispatch(action, payload))


class FakeAWSControl(_ControlMixin):
    """Control a fake running elsewhere (e.g. ``python -m tests.doubles.fakeaws``) over HTTP."""

    _ROUTES = {
        "health": ("GET", "/_fake/health"),
        "stats": ("GET", "/_fake/stats"),
        "clear_stats": ("POST", "/_fake/stats/clear"),
        "reset": ("POST", "/_fake/reset"),
        "inject": ("POST", "/_fake/inject"),
        "faults": ("GET", "/_fake/faults"),
        "clear_faults": ("POST", "/_fake/faults/clear"),
    }

    def __init__(self, url, timeout=10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _control(self, action, payload=None):
        if action == "config":
            method, path = ("POST" if payload else "GET"), "/_fake/config"
        else:
            method, path = self._ROUTES[action]
        data = None
        if method == "GET":
            if action == "stats" and payload and not payload.get("log", True):
                path += "?log=0"
        else:
            data = json.dumps(payload or {}).encode("utf-8")
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")
            raise ValueError("fakeaws control %s failed: %s %s" % (action, e.code, detail)) from None
