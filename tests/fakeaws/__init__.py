"""Fake Amazon Comprehend + SageMaker Runtime for sqlml tests (never reaches AWS).

One stdlib HTTP/1.1 keep-alive server (default 127.0.0.1, port 0 = any free
port) speaks both real wire protocols, so an unmodified boto3 client pointed at
it with ``endpoint_url`` works:

* Comprehend, AWS JSON 1.1: ``POST /`` with ``X-Amz-Target:
  Comprehend_20171127.DetectSentiment`` or ``...BatchDetectSentiment``.
  Sentiment comes from :func:`fake_sentiment` (see ``sentiment.py``).
* SageMaker Runtime, REST-JSON: ``POST /endpoints/{name}/invocations``; the
  endpoint's behaviour is chosen by name prefix (echo, sum, xgb, rcf, linear,
  jsonl, len; see ``endpoints.py``).
* Control API (JSON) under ``/_fake/``: stats, reset, config, fault injection.

Python::

    from tests.fakeaws import FakeAWS
    with FakeAWS() as fake:
        cm = fake.client("comprehend")              # boto3, retries off
        fake.fail_next(2, code="ThrottlingException", service="comprehend")
        ...
        fake.stats()["items_by_operation"]["BatchDetectSentiment"]  # [25, 25, 10]

CLI (serves until SIGTERM/SIGINT)::

    python -m tests.fakeaws --port 0 --port-file /tmp/fake.port

and control it from another process with ``FakeAWSControl(url)``.
"""

from .endpoints import KINDS as ENDPOINT_KINDS
from .endpoints import kind_for, parse_csv
from .sentiment import NEGATIVE_WORDS, POSITIVE_WORDS, fake_sentiment
from .server import (
    DEFAULT_CONFIG,
    ERROR_STATUS,
    FAULT_KINDS,
    LANGUAGES,
    MAX_BATCH,
    MAX_BODY_BYTES,
    MAX_TEXT_BYTES,
    FakeAWS,
    FakeAWSControl,
)

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
