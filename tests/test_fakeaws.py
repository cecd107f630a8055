"""Tests of the fake Comprehend / SageMaker Runtime service (tests/doubles/fakeaws).

Run: PYTHONPATH=/work/main /tmp/testvenv/bin/python -m pytest tests/test_fakeaws.py -q
Everything talks to 127.0.0.1 only; boto3 gets dummy credentials.
"""

import csv
import http.client
import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import boto3
import botocore
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.doubles.fakeaws import (
    FakeAWS,
    FakeAWSControl,
    MAX_BODY_BYTES,
    fake_sentiment,
    kind_for,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_RETRY = {"mode": "standard", "total_max_attempts": 1}
CREDS = dict(aws_access_key_id="testing", aws_secret_access_key="testing", aws_session_token="testing")


@pytest.fixture(scope="module", autouse=True)
def aws_env():
    saved = dict(os.environ)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_SECURITY_TOKEN="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def fake(aws_env):
    with FakeAWS() as f:
        yield f


@pytest.fixture(autouse=True)
def _reset(fake):
    fake.reset()
    yield
    fake.reset()


def make_client(fake, service, **config):
    config.setdefault("retries", NO_RETRY)
    return boto3.client(
        service, endpoint_url=fake.url, region_name="us-east-1", config=Config(**config), **CREDS
    )


@pytest.fixture(scope="module")
def cm(fake):
    return make_client(fake, "comprehend", max_pool_connections=32)


@pytest.fixture(scope="module")
def sm(fake):
    return make_client(fake, "sagemaker-runtime", max_pool_connections=32)


def invoke(sm, endpoint, body, content_type="text/csv", **kw):
    r = sm.invoke_endpoint(EndpointName=endpoint, Body=body, ContentType=content_type, **kw)
    return r, r["Body"].read()


def csv_rows(data):
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def to_csv(rows, terminator="\n"):
    buf = io.StringIO()
    csv.writer(buf, lineterminator=terminator).writerows(rows)
    return buf.getvalue().encode("utf-8")


def raw_request(fake, method, path, body=b"", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    try:
        conn.request(method, path, body, headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


SIGNED = {"Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/comprehend/aws4_request, "
          "SignedHeaders=host, Signature=00"}


# ---------------------------------------------------------------------------
# the sentiment rule
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,label,conf",
    [
        ("It is good", "POSITIVE", 0.6),
        ("good GREAT", "POSITIVE", 0.7),
        ("good, great and excellent!", "POSITIVE", 0.8),
        ("good good good good good good", "POSITIVE", 0.9),
        ("This is bad", "NEGATIVE", 0.6),
        ("bad awful terrible hate", "NEGATIVE", 0.9),
        ("good but bad", "MIXED", 0.55),
        ("just a table", "NEUTRAL", 0.6),
        ("goodness badly", "NEUTRAL", 0.6),  # whole words only
        ("Löve is not love", "POSITIVE", 0.6),
        ("¡Sad!", "NEGATIVE", 0.6),
    ],
)
def test_fake_sentiment_rule(text, label, conf):
    got_label, scores = fake_sentiment(text)
    assert got_label == label
    assert set(scores) == {"Positive", "Negative", "Neutral", "Mixed"}
    assert scores[label.capitalize()] == conf
    others = [v for k, v in scores.items() if k != label.capitalize()]
    assert others[0] == others[1] == others[2] == pytest.approx((1 - conf) / 3)
    assert sum(scores.values()) == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# Comprehend
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["I love this, it is great", "worst ever", "meh", "good and bad", "é" * 2500])
def test_detect_sentiment(cm, text):
    r = cm.detect_sentiment(Text=text, LanguageCode="en")
    label, scores = fake_sentiment(text)
    assert r["Sentiment"] == label
    assert r["SentimentScore"] == scores
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert r["ResponseMetadata"]["RequestId"]


def test_batch_detect_sentiment(cm, fake):
    texts = ["text %d %s" % (i, ["good", "bad", "", "good bad"][i % 4]) for i in range(25)]
    r = cm.batch_detect_sentiment(TextList=texts, LanguageCode="de")
    assert r["ErrorList"] == []
    assert [x["Index"] for x in r["ResultList"]] == list(range(25))
    for x in r["ResultList"]:
        label, scores = fake_sentiment(texts[x["Index"]])
        assert x["Sentiment"] == label and x["SentimentScore"] == scores


def test_all_languages_accepted(cm):
    for lang in "en es fr de it pt ar hi ja ko zh zh-TW".split():
        assert cm.detect_sentiment(Text="good", LanguageCode=lang)["Sentiment"] == "POSITIVE"


def test_batch_marker_items_fail(cm, fake):
    texts = ["good", "bad #fail# here", "great", "#fail#"]
    r = cm.batch_detect_sentiment(TextList=texts, LanguageCode="en")
    assert [x["Index"] for x in r["ResultList"]] == [0, 2]
    assert [(e["Index"], e["ErrorCode"]) for e in r["ErrorList"]] == [
        (1, "INTERNAL_SERVER_ERROR"),
        (3, "INTERNAL_SERVER_ERROR"),
    ]
    assert all(e["ErrorMessage"] for e in r["ErrorList"])
    # custom markers / codes
    fake.configure(item_errors={"@@lang@@": "UNSUPPORTED_LANGUAGE"})
    r = cm.batch_detect_sentiment(TextList=["x @@lang@@", "#fail#"], LanguageCode="en")
    assert [(e["Index"], e["ErrorCode"]) for e in r["ErrorList"]] == [(0, "UNSUPPORTED_LANGUAGE")]
    assert [x["Index"] for x in r["ResultList"]] == [1]


def test_single_marker_raises(cm, fake):
    with pytest.raises(cm.exceptions.InternalServerException) as ei:
        cm.detect_sentiment(Text="oops #fail#", LanguageCode="en")
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def _code_status(excinfo):
    resp = excinfo.value.response
    return resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"]


def test_comprehend_validation_errors(cm, fake):
    with pytest.raises(cm.exceptions.UnsupportedLanguageException) as ei:
        cm.detect_sentiment(Text="good", LanguageCode="xx")
    assert _code_status(ei) == ("UnsupportedLanguageException", 400)
    with pytest.raises(cm.exceptions.UnsupportedLanguageException):
        cm.batch_detect_sentiment(TextList=["good"], LanguageCode="ru")
    with pytest.raises(cm.exceptions.BatchSizeLimitExceededException) as ei:
        cm.batch_detect_sentiment(TextList=["good"] * 26, LanguageCode="en")
    assert _code_status(ei) == ("BatchSizeLimitExceededException", 400)
    # 5000 UTF-8 bytes is fine, 5001 is not (the euro sign is 3 bytes)
    assert cm.detect_sentiment(Text="€" * 1666 + "ab", LanguageCode="en")["Sentiment"] == "NEUTRAL"
    with pytest.raises(cm.exceptions.TextSizeLimitExceededException) as ei:
        cm.detect_sentiment(Text="€" * 1667, LanguageCode="en")
    assert _code_status(ei) == ("TextSizeLimitExceededException", 400)
    assert "5001 bytes" in ei.value.response["Error"]["Message"]
    # botocore itself refuses an empty Text before sending anything
    with pytest.raises(botocore.exceptions.ParamValidationError):
        cm.detect_sentiment(Text="", LanguageCode="en")
    assert fake.stats()["requests"] == 5


def test_batch_oversize_item_and_request_modes(cm, fake):
    texts = ["good", "x" * 5001, "bad"]
    r = cm.batch_detect_sentiment(TextList=texts, LanguageCode="en")
    assert [x["Index"] for x in r["ResultList"]] == [0, 2]
    assert [(e["Index"], e["ErrorCode"]) for e in r["ErrorList"]] == [(1, "TEXT_SIZE_LIMIT_EXCEEDED")]
    fake.configure(batch_oversize="request")
    with pytest.raises(cm.exceptions.TextSizeLimitExceededException):
        cm.batch_detect_sentiment(TextList=texts, LanguageCode="en")


def test_comprehend_raw_wire_errors(fake):
    target = {"X-Amz-Target": "Comprehend_20171127.DetectSentiment", "Content-Type": "application/x-amz-json-1.1"}
    # empty Text (botocore never sends it): ValidationException
    status, headers, body = raw_request(
        fake, "POST", "/", json.dumps({"Text": "", "LanguageCode": "en"}), dict(target, **SIGNED)
    )
    assert status == 400 and json.loads(body)["__type"] == "ValidationException"
    assert headers["content-type"] == "application/x-amz-json-1.1" and headers["x-amzn-requestid"]
    # missing Text
    status, _, body = raw_request(fake, "POST", "/", json.dumps({"LanguageCode": "en"}), dict(target, **SIGNED))
    assert status == 400 and json.loads(body)["__type"] == "ValidationException"
    # not JSON
    status, _, body = raw_request(fake, "POST", "/", b"{nope", dict(target, **SIGNED))
    assert status == 400 and json.loads(body)["__type"] == "SerializationException"
    # unsigned
    status, _, body = raw_request(fake, "POST", "/", json.dumps({"Text": "a", "LanguageCode": "en"}), target)
    assert status == 403 and json.loads(body)["__type"] == "MissingAuthenticationTokenException"
    # unknown operation
    other = dict(target, **SIGNED)
    other["X-Amz-Target"] = "Comprehend_20171127.DetectEntities"
    status, _, body = raw_request(fake, "POST", "/", json.dumps({"Text": "a", "LanguageCode": "en"}), other)
    assert status == 400 and json.loads(body)["__type"] == "UnknownOperationException"
    fake.configure(require_auth=False)
    status, _, body = raw_request(fake, "POST", "/", json.dumps({"Text": "good", "LanguageCode": "en"}), target)
    assert status == 200 and json.loads(body)["Sentiment"] == "POSITIVE"


# ---------------------------------------------------------------------------
# SageMaker Runtime endpoint kinds
# ---------------------------------------------------------------------------

TRICKY = [
    ["plain", "1"],
    ["with,comma", "2"],
    ['say "hi"', "3"],
    ["multi\nline", "4"],
    ["crlf\r\ninside", "5"],
    ["", "6"],
    ["ünïcødé 日本語 😀", "7"],
    ["  spaces  ", "8"],
    ['"', "9"],
    ["\u2028sep", "10"],
]


@pytest.mark.parametrize("terminator", ["\n", "\r\n"])
def test_echo_preserves_rows(sm, fake, terminator):
    r, body = invoke(sm, "echo-model", to_csv(TRICKY, terminator))
    assert r["ContentType"] == "text/csv; charset=utf-8"
    assert r["InvokedProductionVariant"] == "AllTraffic"
    assert csv_rows(body) == [[row[0]] for row in TRICKY]
    assert fake.stats()["items_by_endpoint"]["echo-model"] == [len(TRICKY)]


def test_echo_unquoted_fast_path(sm):
    rows = [["row%d" % i, str(i)] for i in range(1000)]
    _, body = invoke(sm, "echo", to_csv(rows))
    assert body.decode().splitlines() == ["row%d" % i for i in range(1000)]


ROWS = [["1", "2", "3"], ["100", "-4.5", ""], ["0.1", "0.2"], ["7"]]
SUMS = [6.0, 95.5, 0.1 + 0.2, 7.0]


def test_sum_endpoint(sm):
    r, body = invoke(sm, "sum-v1", to_csv(ROWS))
    assert r["ContentType"].startswith("text/csv")
    assert body.decode().split("\n") == [repr(s) for s in SUMS] + [""]


def test_xgb_endpoint_one_line(sm):
    r, body = invoke(sm, "xgb-churn", to_csv(ROWS), Accept="text/csv")
    assert r["ContentType"].startswith("text/csv")
    assert b"\n" not in body
    assert [float(x) for x in body.decode().split(",")] == SUMS


def test_rcf_endpoint(sm):
    r, body = invoke(sm, "rcf-anomaly", to_csv([["100"], ["85", "x"], ["120.5", "1"]]), Accept="application/json")
    assert r["ContentType"] == "application/json"
    assert json.loads(body) == {"scores": [{"score": 0.0}, {"score": 1.5}, {"score": 2.05}]}


def test_linear_endpoint(sm):
    r, body = invoke(sm, "linear-learner", to_csv([["0.2", "0.2"], ["0.5"], ["-1", "3"]]))
    assert r["ContentType"] == "application/json"
    assert json.loads(body) == {
        "predictions": [
            {"score": 0.4, "predicted_label": 0},
            {"score": 0.5, "predicted_label": 1},
            {"score": 2.0, "predicted_label": 1},
        ]
    }


def test_jsonl_endpoint(sm):
    r, body = invoke(sm, "jsonl-x", to_csv(ROWS))
    assert r["ContentType"] == "application/jsonlines"
    assert [json.loads(line) for line in body.decode().splitlines()] == SUMS


def test_len_endpoint(sm):
    rows = [["a"], ["a", "b"], ["a,b", "c", ""], ["", ""], ["x\ny", "z"]]
    _, body = invoke(sm, "len", to_csv(rows))
    assert body.decode().split() == ["1", "2", "3", "2", "2"]


def test_blank_lines_are_not_rows(sm):
    _, body = invoke(sm, "len", b"1,2\n\n3\n\n")
    assert body == b"2\n1\n"


def test_endpoint_kind_selection_and_aliases(sm, fake):
    assert kind_for("linear-1") == "linear" and kind_for("len-1") == "len"
    assert kind_for("jsonl") == "jsonl" and kind_for("mystery") is None
    fake.configure(endpoint_aliases={"prod-*": "sum", "churn": "xgb"})
    assert invoke(sm, "prod-model", b"1,2\n")[1] == b"3.0\n"
    assert invoke(sm, "churn", b"1,2\n3\n")[1] == b"3.0,3.0"


def test_empty_body(sm):
    _, body = invoke(sm, "sum", b"")
    assert body == b""


# ---------------------------------------------------------------------------
# SageMaker errors
# ---------------------------------------------------------------------------


def test_unknown_endpoint_validation_error(sm):
    with pytest.raises(ClientError) as ei:
        invoke(sm, "nope-model", b"1\n")
    assert _code_status(ei) == ("ValidationError", 400)
    assert ei.value.response["Error"]["Message"] == "Endpoint nope-model of account 123456789012 not found."
    assert isinstance(ei.value, sm.exceptions.ValidationError)


def test_body_size_limit(sm):
    body = b"x" * (MAX_BODY_BYTES - 1) + b"\n"
    r, out = invoke(sm, "len", body)
    assert out == b"1\n"
    with pytest.raises(sm.exceptions.ValidationError) as ei:
        invoke(sm, "len", body + b"y")
    assert _code_status(ei) == ("ValidationError", 413)


def test_model_errors_from_input(sm, fake):
    with pytest.raises(sm.exceptions.ModelError) as ei:
        invoke(sm, "sum", b"1,2\nabc,3\n")
    resp = ei.value.response
    assert _code_status(ei) == ("ModelError", 424)
    assert resp["OriginalStatusCode"] == 400
    assert "abc" in resp["OriginalMessage"] and "row 1" in resp["OriginalMessage"]
    assert resp["LogStreamArn"].startswith("arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/sum")
    # wrong / missing content type -> the "container" answers 415
    with pytest.raises(sm.exceptions.ModelError) as ei:
        invoke(sm, "sum", b'{"a": 1}', content_type="application/json")
    assert ei.value.response["OriginalStatusCode"] == 415
    with pytest.raises(sm.exceptions.ModelError) as ei:
        sm.invoke_endpoint(EndpointName="sum", Body=b"1\n")
    assert ei.value.response["OriginalStatusCode"] == 415
    # failure marker in any row
    with pytest.raises(sm.exceptions.ModelError):
        invoke(sm, "echo", b"ok\n#fail#\n")
    # invalid UTF-8
    with pytest.raises(sm.exceptions.ModelError):
        invoke(sm, "echo", b"\xff\xfe\n")
    assert fake.stats()["errors"] == {"ModelError": 5}


# ---------------------------------------------------------------------------
# injected errors -> ClientError codes
# ---------------------------------------------------------------------------

COMPREHEND_FAULTS = [
    ("ThrottlingException", None, 400, None),
    ("TooManyRequestsException", None, 429, "TooManyRequestsException"),
    ("InternalServerException", None, 500, "InternalServerException"),
    ("ServiceUnavailableException", None, 503, None),
    ("InvalidRequestException", None, 400, "InvalidRequestException"),
    ("ThrottlingException", 429, 429, None),
]


@pytest.mark.parametrize("code,status,expect_status,modeled", COMPREHEND_FAULTS)
def test_comprehend_injected_errors(cm, fake, code, status, expect_status, modeled):
    fake.fail_next(1, code=code, status=status, service="comprehend")
    with pytest.raises(ClientError) as ei:
        cm.batch_detect_sentiment(TextList=["good"], LanguageCode="en")
    assert _code_status(ei) == (code, expect_status)
    assert ei.value.response["Error"]["Message"]
    if modeled:
        assert isinstance(ei.value, getattr(cm.exceptions, modeled))
    # the fault was for one request only
    assert cm.batch_detect_sentiment(TextList=["good"], LanguageCode="en")["ResultList"]


SAGEMAKER_FAULTS = [
    ("ModelError", 424, "ModelError"),
    ("ModelNotReadyException", 429, "ModelNotReadyException"),
    ("InternalFailure", 500, "InternalFailure"),
    ("ServiceUnavailable", 503, "ServiceUnavailable"),
    ("InternalDependencyException", 530, "InternalDependencyException"),
    ("ValidationError", 400, "ValidationError"),
    ("ThrottlingException", 400, None),
]


@pytest.mark.parametrize("code,expect_status,modeled", SAGEMAKER_FAULTS)
def test_sagemaker_injected_errors(sm, fake, code, expect_status, modeled):
    fake.fail_next(1, code=code, endpoint="sum*")
    with pytest.raises(ClientError) as ei:
        invoke(sm, "sum-a", b"1\n")
    assert _code_status(ei) == (code, expect_status)
    assert ei.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"].startswith(code + ":")
    if modeled:
        assert isinstance(ei.value, getattr(sm.exceptions, modeled))
    if code == "ModelError":
        assert ei.value.response["OriginalStatusCode"] == 500
    assert invoke(sm, "sum-a", b"1\n")[1] == b"1.0\n"


def test_default_error_codes_per_service(cm, sm, fake):
    fake.fail_next(2)
    with pytest.raises(cm.exceptions.InternalServerException):
        cm.detect_sentiment(Text="a", LanguageCode="en")
    with pytest.raises(sm.exceptions.InternalFailure):
        invoke(sm, "sum", b"1\n")


def test_fault_matching(cm, sm, fake):
    fake.fail_next(1, code="ModelNotReadyException", endpoint="sum*")
    fake.fail_next(1, code="ThrottlingException", service="comprehend", operation="BatchDetectSentiment")
    # neither matches these
    assert invoke(sm, "echo", b"a\n")[1] == b"a\n"
    assert cm.detect_sentiment(Text="good", LanguageCode="en")["Sentiment"] == "POSITIVE"
    assert len(fake.faults()) == 2
    with pytest.raises(sm.exceptions.ModelNotReadyException):
        invoke(sm, "sum-2", b"1\n")
    with pytest.raises(ClientError, match="ThrottlingException"):
        cm.batch_detect_sentiment(TextList=["a"], LanguageCode="en")
    assert fake.faults() == []
    assert fake.stats()["faults_fired"] == {"error": 2}


def test_fault_skip_and_forever(cm, fake):
    fake.fail_next(1, code="ThrottlingException", skip=2)
    for _ in range(2):
        cm.detect_sentiment(Text="a", LanguageCode="en")
    with pytest.raises(ClientError, match="ThrottlingException"):
        cm.detect_sentiment(Text="a", LanguageCode="en")
    cm.detect_sentiment(Text="a", LanguageCode="en")

    rule = fake.fail_next(None, code="InternalServerException")
    for _ in range(3):
        with pytest.raises(cm.exceptions.InternalServerException):
            cm.detect_sentiment(Text="a", LanguageCode="en")
    assert [f["id"] for f in fake.faults()] == [rule] and fake.faults()[0]["fired"] == 3
    fake.clear_faults()
    cm.detect_sentiment(Text="a", LanguageCode="en")


def test_botocore_retries_injected_throttling(fake):
    # standard mode, 3 attempts in total: two throttles then success
    client = make_client(fake, "comprehend", retries={"mode": "standard", "total_max_attempts": 3})
    fake.fail_next(2, code="ThrottlingException", service="comprehend")
    r = client.batch_detect_sentiment(TextList=["good"] * 10, LanguageCode="en")
    assert r["ResponseMetadata"]["RetryAttempts"] == 2
    st = fake.stats()
    assert st["items_by_operation"]["BatchDetectSentiment"] == [10, 10, 10]
    assert [e["status"] for e in st["log"]] == [400, 400, 200]


def test_botocore_max_attempts_counts_retries(fake):
    """Config(retries={'max_attempts': 1}) means ONE RETRY (2 calls); use total_max_attempts=1 for none."""
    client = make_client(fake, "comprehend", retries={"mode": "standard", "max_attempts": 1})
    fake.fail_next(5, code="ThrottlingException")
    with pytest.raises(ClientError):
        client.detect_sentiment(Text="a", LanguageCode="en")
    assert fake.stats()["requests"] == 2


# ---------------------------------------------------------------------------
# malformed / short / extra answers
# ---------------------------------------------------------------------------


def test_malformed_comprehend(cm, fake):
    fake.malformed_next(1, service="comprehend")
    status, _, body = raw_request(
        fake,
        "POST",
        "/",
        json.dumps({"TextList": ["a"], "LanguageCode": "en"}),
        dict(SIGNED, **{"X-Amz-Target": "Comprehend_20171127.BatchDetectSentiment"}),
    )
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(body)
    # boto3 does NOT raise on an unparseable 200 body: the result keys are just missing
    fake.malformed_next(1)
    r = cm.batch_detect_sentiment(TextList=["a"], LanguageCode="en")
    assert "ResultList" not in r
    fake.malformed_next(1, body='{"Sentiment": 42}')
    assert cm.detect_sentiment(Text="a", LanguageCode="en")["Sentiment"] == 42


@pytest.mark.parametrize("endpoint", ["echo", "sum", "xgb", "len"])
def test_malformed_csv(sm, fake, endpoint):
    fake.malformed_next(1, endpoint=endpoint)
    _, body = invoke(sm, endpoint, b"1\n2\n")
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")


@pytest.mark.parametrize("endpoint", ["rcf", "linear", "jsonl"])
def test_malformed_json(sm, fake, endpoint):
    fake.malformed_next(1, endpoint=endpoint)
    _, body = invoke(sm, endpoint, b"1\n2\n")
    with pytest.raises(ValueError):
        json.loads(body)


def test_short_and_extra_comprehend(cm, fake):
    texts = ["good", "bad", "meh"]
    fake.short_next(1)
    r = cm.batch_detect_sentiment(TextList=texts, LanguageCode="en")
    assert [x["Index"] for x in r["ResultList"]] == [0, 1]
    fake.extra_next(1)
    r = cm.batch_detect_sentiment(TextList=texts, LanguageCode="en")
    assert [x["Index"] for x in r["ResultList"]] == [0, 1, 2, 3]
    fake.short_next(1)
    assert "Sentiment" not in cm.detect_sentiment(Text="good", LanguageCode="en")
    assert fake.stats()["faults_fired"] == {"short": 2, "extra": 1}


@pytest.mark.parametrize(
    "endpoint,count",
    [
        ("echo", lambda b: len(csv_rows(b))),
        ("sum", lambda b: len(b.decode().splitlines())),
        ("len", lambda b: len(b.decode().splitlines())),
        ("xgb", lambda b: len(b.decode().split(","))),
        ("rcf", lambda b: len(json.loads(b)["scores"])),
        ("linear", lambda b: len(json.loads(b)["predictions"])),
        ("jsonl", lambda b: len(b.decode().splitlines())),
    ],
)
def test_short_and_extra_sagemaker(sm, fake, endpoint, count):
    body = b"1,2\n3,4\n5,6\n"
    assert count(invoke(sm, endpoint, body)[1]) == 3
    fake.short_next(1, endpoint=endpoint)
    assert count(invoke(sm, endpoint, body)[1]) == 2
    fake.extra_next(1, endpoint=endpoint)
    assert count(invoke(sm, endpoint, body)[1]) == 4
    assert count(invoke(sm, endpoint, body)[1]) == 3


# ---------------------------------------------------------------------------
# latency, hang, disconnect
# ---------------------------------------------------------------------------


def test_latency_per_service_and_endpoint(cm, sm, fake):
    fake.configure(latency_ms_by_service={"sagemaker": 300}, latency_ms_by_endpoint={"slow*": 600})
    t = time.monotonic()
    cm.detect_sentiment(Text="a", LanguageCode="en")
    assert time.monotonic() - t < 0.25
    t = time.monotonic()
    invoke(sm, "sum", b"1\n")
    assert 0.3 <= time.monotonic() - t < 1.5
    fake.configure(endpoint_aliases={"slow*": "sum"})
    t = time.monotonic()
    invoke(sm, "slowpoke", b"1\n")
    assert 0.6 <= time.monotonic() - t < 2.0
    fake.configure(latency_ms=200, latency_ms_by_service={}, latency_ms_by_endpoint={})
    t = time.monotonic()
    cm.detect_sentiment(Text="a", LanguageCode="en")
    assert time.monotonic() - t >= 0.2


def test_hang_triggers_client_read_timeout(fake):
    client = make_client(fake, "sagemaker-runtime", read_timeout=0.5, connect_timeout=2)
    fake.hang_next(1, seconds=5, endpoint="sum")
    t = time.monotonic()
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        invoke(client, "sum", b"1\n")
    assert time.monotonic() - t < 3
    # the server is still fine and the next request is not delayed
    t = time.monotonic()
    assert invoke(client, "sum", b"2\n")[1] == b"2.0\n"
    assert time.monotonic() - t < 0.5
    assert fake.stats()["faults_fired"] == {"hang": 1}


def test_hang_then_answer(cm, fake):
    fake.hang_next(1, seconds=0.4)
    t = time.monotonic()
    assert cm.detect_sentiment(Text="good", LanguageCode="en")["Sentiment"] == "POSITIVE"
    assert time.monotonic() - t >= 0.4


def test_reset_wakes_hung_requests(cm, fake):
    fake.hang_next(1, seconds=30)
    result = {}

    def call():
        result["r"] = cm.detect_sentiment(Text="good", LanguageCode="en")["Sentiment"]

    th = threading.Thread(target=call)
    t = time.monotonic()
    th.start()
    time.sleep(0.3)
    fake.reset()
    th.join(10)
    assert result == {"r": "POSITIVE"} and time.monotonic() - t < 5


def test_disconnect(cm, fake):
    fake.disconnect_next(1)
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        cm.detect_sentiment(Text="a", LanguageCode="en")
    assert cm.detect_sentiment(Text="good", LanguageCode="en")["Sentiment"] == "POSITIVE"
    assert [e["status"] for e in fake.stats()["log"]] == [0, 200]


# ---------------------------------------------------------------------------
# stats and control API
# ---------------------------------------------------------------------------


def test_stats_counts(cm, sm, fake):
    texts = ["t%d good" % i for i in range(60)]
    for i in range(0, 60, 25):
        cm.batch_detect_sentiment(TextList=texts[i:i + 25], LanguageCode="en")
    cm.detect_sentiment(Text="a", LanguageCode="en")
    invoke(sm, "sum-1", b"1\n2\n3\n")
    invoke(sm, "sum-1", b"1\n")
    invoke(sm, "echo", b"a\n")
    st = fake.stats()
    assert st["requests"] == 7
    assert st["by_service"] == {"comprehend": 4, "sagemaker": 3}
    assert st["by_operation"] == {"BatchDetectSentiment": 3, "DetectSentiment": 1, "InvokeEndpoint": 3}
    assert st["by_endpoint"] == {"sum-1": 2, "echo": 1}
    assert st["items_by_operation"]["BatchDetectSentiment"] == [25, 25, 10]
    assert st["items"] == {"comprehend": [25, 25, 10, 1], "sagemaker": [3, 1, 1]}
    assert st["items_by_endpoint"] == {"sum-1": [3, 1], "echo": [1]}
    assert st["status"] == {"200": 7}
    # A handler leaves the in-flight count just after its response is written,
    # so the client can read the answer a moment before the count drops.
    deadline = time.monotonic() + 5
    while fake.stats(log=False)["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.stats(log=False)["in_flight"] == 0
    entry = st["log"][-1]
    assert entry["endpoint"] == "echo" and entry["content_type"] == "text/csv"
    assert entry["access_key"] == "testing" and entry["region"] == "us-east-1"
    assert [e["seq"] for e in st["log"]] == list(range(1, 8))
    assert "log" not in fake.stats(log=False)
    fake.clear_stats()
    assert fake.stats()["requests"] == 0


def test_http_control_api(fake, cm):
    ctl = FakeAWSControl(fake.url)
    assert ctl.health() == {"ok": True}
    rid = ctl.fail_next(1, code="ThrottlingException", service="comprehend")
    assert [f["id"] for f in ctl.faults()] == [rid]
    with pytest.raises(ClientError, match="ThrottlingException"):
        cm.detect_sentiment(Text="a", LanguageCode="en")
    st = ctl.stats()
    assert st["requests"] == 1 and st["errors"] == {"ThrottlingException": 1}
    assert ctl.configure(latency_ms=5)["latency_ms"] == 5
    assert ctl.get_config()["latency_ms"] == 5
    ctl.reset()
    assert ctl.get_config()["latency_ms"] == 0 and ctl.stats()["requests"] == 0

    def post(path, payload):
        req = urllib.request.Request(
            fake.url + path, data=json.dumps(payload).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    # raw HTTP: a list of rules at once, then stats via GET
    ids = post("/_fake/inject", [{"kind": "short", "count": 1}, {"kind": "error", "code": "ModelError",
                                                                   "service": "sagemaker"}])["ids"]
    assert len(ids) == 2
    with urllib.request.urlopen(fake.url + "/_fake/faults", timeout=5) as r:
        assert [f["kind"] for f in json.loads(r.read())["faults"]] == ["short", "error"]
    post("/_fake/faults/clear", {})
    with urllib.request.urlopen(fake.url + "/_fake/stats?log=0", timeout=5) as r:
        assert "log" not in json.loads(r.read())
    # bad requests are 400 with an error message
    for payload in ({"kind": "explode"}, {"kind": "error", "colour": "red"}):
        with pytest.raises(urllib.error.HTTPError) as ei:
            post("/_fake/inject", payload)
        assert ei.value.code == 400 and "error" in json.loads(ei.value.read())
    with pytest.raises(urllib.error.HTTPError) as ei:
        post("/_fake/config", {"no_such_setting": 1})
    assert ei.value.code == 400
    with pytest.raises(ValueError):
        fake.configure(batch_oversize="sometimes")
    # control requests are not counted
    assert fake.stats()["requests"] == 0


# ---------------------------------------------------------------------------
# concurrency and keep-alive
# ---------------------------------------------------------------------------


def test_concurrent_keepalive_threads(fake):
    n_threads, per_thread = 16, 40
    cmc = make_client(fake, "comprehend", max_pool_connections=n_threads)
    smc = make_client(fake, "sagemaker-runtime", max_pool_connections=n_threads)
    fake.configure(latency_ms=2)
    errors = []

    def work(tid):
        try:
            for i in range(per_thread):
                value = "t%d-i%d, \"q\" ü" % (tid, i)
                _, body = invoke(smc, "echo", to_csv([[value, "x"], [value + "!", "y"]]))
                assert csv_rows(body) == [[value], [value + "!"]]
                text = "good " * (tid % 5)
                r = cmc.detect_sentiment(Text=text + "x", LanguageCode="en")
                assert r["Sentiment"] == fake_sentiment(text + "x")[0]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors[:3]
    st = fake.stats(log=False)
    assert st["requests"] == 2 * n_threads * per_thread
    assert st["max_in_flight"] > 1
    # keep-alive: connections are reused (at most one pool per client and thread)
    assert st["connections"] <= 2 * n_threads


def test_throughput_raw_keepalive(fake):
    fake.configure(require_auth=False)
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    body = json.dumps({"Text": "good", "LanguageCode": "en"})
    headers = {"X-Amz-Target": "Comprehend_20171127.DetectSentiment"}
    n = 1000
    t = time.monotonic()
    for _ in range(n):
        conn.request("POST", "/", body, headers)
        r = conn.getresponse()
        r.read()
        assert r.status == 200
    dt = time.monotonic() - t
    conn.close()
    assert fake.stats(log=False)["connections"] == 1
    assert n / dt > 500, "only %.0f requests/s" % (n / dt)


def test_big_csv_is_fast(sm):
    rows = [["row %d, \"quoted\"" % i, str(i), str(i * 2)] for i in range(30000)]
    body = to_csv(rows)
    assert len(body) > 1_000_000
    t = time.monotonic()
    _, out = invoke(sm, "echo", body)
    assert time.monotonic() - t < 3
    assert csv_rows(out) == [[r[0]] for r in rows]
    t = time.monotonic()
    _, out = invoke(sm, "xgb", to_csv([[str(i), "1"] for i in range(100000)]))
    assert time.monotonic() - t < 3
    assert out.count(b",") == 99999


def test_stop_is_prompt_with_idle_and_hung_connections():
    f = FakeAWS().start()
    client = make_client(f, "comprehend", read_timeout=30)
    client.detect_sentiment(Text="a", LanguageCode="en")  # leaves an idle pooled connection
    f.hang_next(1, seconds=60)
    th = threading.Thread(target=lambda: _swallow(client.detect_sentiment, Text="a", LanguageCode="en"))
    th.start()
    time.sleep(0.3)
    t = time.monotonic()
    f.stop()
    assert time.monotonic() - t < 3
    th.join(10)
    assert not th.is_alive()
    f.stop()  # idempotent


def _swallow(fn, **kw):
    try:
        fn(**kw)
    except Exception:
        pass


def test_context_manager_and_port_reuse():
    with FakeAWS() as f:
        port = f.port
        assert f.url == "http://127.0.0.1:%d" % port
        assert f.client("comprehend").detect_sentiment(Text="good", LanguageCode="en")["Sentiment"] == "POSITIVE"
    with FakeAWS(port=port) as f2:  # the port is free again right away
        assert f2.port == port
        assert FakeAWSControl(f2.url).health() == {"ok": True}


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def test_cli_subprocess(tmp_path, aws_env):
    port_file = tmp_path / "port"
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.doubles.fakeaws", "--port", "0", "--port-file", str(port_file)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("fakeaws listening on http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[-1]
        assert int(port_file.read_text()) == int(url.rsplit(":", 1)[1])
        ctl = FakeAWSControl(url)
        ctl.fail_next(1, code="ModelNotReadyException", endpoint="xgb*")
        client = ctl.client("sagemaker-runtime")
        with pytest.raises(client.exceptions.ModelNotReadyException):
            invoke(client, "xgb-1", b"1,2\n")
        assert invoke(client, "xgb-1", b"1,2\n3\n")[1] == b"3.0,3.0"
        assert ctl.stats()["items_by_endpoint"] == {"xgb-1": [1, 2]}
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


# ---------------------------------------------------------------------------
# wire-shape cross-check against moto
# ---------------------------------------------------------------------------


def _shape(value):
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [_shape(v) for v in value[:1]]
    if isinstance(value, botocore.response.StreamingBody):
        return "StreamingBody"
    return type(value).__name__


def test_response_shapes_match_moto(fake):
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        moto_url = "http://%s:%d" % (host, port)
        # moto's backends are process-wide: forget what other tests queued there.
        urllib.request.urlopen(urllib.request.Request(moto_url + "/moto-api/reset", method="POST"), timeout=5).read()

        def clients(url):
            kw = dict(endpoint_url=url, region_name="us-east-1", config=Config(retries=NO_RETRY), **CREDS)
            return boto3.client("comprehend", **kw), boto3.client("sagemaker-runtime", **kw)

        (m_cm, m_sm), (f_cm, f_sm) = clients(moto_url), clients(fake.url)

        m = m_cm.detect_sentiment(Text="good", LanguageCode="en")
        f = f_cm.detect_sentiment(Text="good", LanguageCode="en")
        assert _shape(f) == _shape(m)
        assert _shape(f) == {
            "Sentiment": "str",
            "SentimentScore": {"Positive": "float", "Negative": "float", "Neutral": "float", "Mixed": "float"},
        }

        req = urllib.request.Request(
            moto_url + "/moto-api/static/sagemaker/endpoint-results",
            data=json.dumps({"results": [{"Body": "3.0\n", "ContentType": "text/csv; charset=utf-8",
                                          "InvokedProductionVariant": "AllTraffic"}]}).encode(),
            method="POST", headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=5).read()
        m = m_sm.invoke_endpoint(EndpointName="sum-1", Body=b"1,2\n", ContentType="text/csv")
        f = f_sm.invoke_endpoint(EndpointName="sum-1", Body=b"1,2\n", ContentType="text/csv")
        assert _shape(f) == _shape(m)
        assert (f["ContentType"], f["InvokedProductionVariant"]) == (m["ContentType"], m["InvokedProductionVariant"])
        assert f["Body"].read() == m["Body"].read() == b"3.0\n"

        # the same error comes back with the same code and response keys (moto's limit is 100000)
        text = "x" * 100001
        errs = []
        for client in (m_cm, f_cm):
            with pytest.raises(ClientError) as ei:
                client.detect_sentiment(Text=text, LanguageCode="en")
            errs.append(ei.value.response)
        assert errs[0]["Error"]["Code"] == errs[1]["Error"]["Code"] == "TextSizeLimitExceededException"
        assert set(errs[0]) == set(errs[1])
        assert errs[0]["ResponseMetadata"]["HTTPStatusCode"] == errs[1]["ResponseMetadata"]["HTTPStatusCode"] == 400
    finally:
        moto.stop()
