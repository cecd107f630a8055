"""Fake Amazon Comprehend + SageMaker Runtime for sqlml tests (never reaches AWS).

One stdlib HTTP/1.1 keep-alive server (default 127.0.0.1, port 0 = any free
port, one daemon thread per connection) speaks both real wire protocols, so an
unmodified boto3 client pointed at it with ``endpoint_url`` works:

* Comprehend, AWS JSON 1.1: ``POST /`` with ``X-Amz-Target:
  Comprehend_20171127.DetectSentiment`` or ``...BatchDetectSentiment``.
  Sentiment comes from :func:`fake_sentiment` (see ``sentiment.py``). Errors:
  JSON ``{"__type": Code, "message": ...}`` with the HTTP status.
* SageMaker Runtime, REST-JSON: ``POST /endpoints/{name}/invocations``; the
  endpoint's behaviour is chosen by name prefix (echo, sum, xgb, rcf, linear,
  jsonl, len; see ``endpoints.py``). Errors: header ``x-amzn-ErrorType:
  Code:namespace`` and body ``{"message": ...}`` (ModelError: ErrorCode,
  Message, OriginalStatusCode, OriginalMessage, LogStreamArn).
* Data-plane requests need a SigV4 ``Authorization`` header (any signature;
  the access key and region are logged) unless ``require_auth=False``.

Python::

    from tests.doubles.fakeaws import FakeAWS, FakeAWSControl, fake_sentiment
    with FakeAWS() as fake:                          # or FakeAWS(port=0).start() / .stop()
        cm = fake.client("comprehend")               # boto3 client, no retries
        fake.fail_next(2, code="ThrottlingException", service="comprehend")
        fake.short_next(1, endpoint="xgb*")
        fake.configure(latency_ms_by_service={"sagemaker": 50})
        fake.stats()["items_by_operation"]["BatchDetectSentiment"]  # e.g. [25, 25, 10]
        fake.reset()                                 # stats, faults and config

Control over HTTP on the same port (JSON; FakeAWSControl(url) wraps it)::

    GET  /_fake/health            {"ok": true}
    GET  /_fake/stats[?log=0]     counters + per-request log
    POST /_fake/stats/clear       clear counters only
    POST /_fake/reset             clear counters and faults, restore start-up config
    GET  /_fake/config            current settings
    POST /_fake/config            {"latency_ms": 20, ...} -> merged settings
    POST /_fake/inject            {"kind": "error", "count": 2, "code": "...", ...} or a list -> {"id"}/{"ids"}
    GET  /_fake/faults            {"faults": [armed rules]}
    POST /_fake/faults/clear      (also DELETE /_fake/faults)

CLI (serves until SIGTERM/SIGINT; prints "fakeaws listening on URL")::

    python -m tests.doubles.fakeaws --port 0 --port-file /tmp/fake.port
"""

from .endpoints import KINDS as ENDPOINT_KINDS
from .endpoints import kind_for, parse_csv
from .sentiment import NEGATIVE_WORDS, POSITIVE_WORDS, fake_sentiment
from .control import FakeAWS, FakeAWSControl
from .state import DEFAULT_CONFIG, ERROR_STATUS, FAULT_KINDS, LANGUAGES, MAX_BATCH, MAX_BODY_BYTES, MAX_TEXT_BYTES

__all__ = [
    "DEFAULT_CONFIG",
    "ENDPOINT_KINDS",
    "ERROR_STATUS",
    "FAULT_KINDS",
    "LANGUAGES",
    "MAX_BATCH",
    "MAX_BODY_BYTES",
    "MAX_TEXT_BYTES",
    "NEGATIVE_WORDS",
    "POSITIVE_WORDS",
    "FakeAWS",
    "FakeAWSControl",
    "fake_sentiment",
    "kind_for",
    "parse_csv",
]
