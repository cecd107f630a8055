"""Tests of the local inference service (sqlml.local, `sqlml serve`).

Everything goes through a real boto3 client (endpoint_url, dummy credentials, no retries)
or raw HTTP to a real service started with ``serve()`` on 127.0.0.1; nothing is mocked.
One moto server is used only as an independent check of response shapes.

Run: cd /work/main && .venv/bin/python -m pytest tests/test_local_service.py -q
"""

from __future__ import annotations

import csv
import http.client
import importlib.util
import itertools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sqlml.local import (
    ConfigError,
    demo_taxi_anomalies,
    demo_taxi_events,
    demo_taxi_series,
    load_config,
    serve,
)
from sqlml.local.comprehend import MIXED_MIN_SHARE, map_vader

DEMO = "random-cut-forest-model-demo"
NAB_TAXI = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab" / "nyc_taxi.csv"
CREDS = dict(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
TARGET = "Comprehend_20171127."


def _client(service: str, url: str, **kw):
    return boto3.client(service, endpoint_url=url, **CREDS, config=Config(
        retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, read_timeout=60,
        max_pool_connections=32, **kw))


@pytest.fixture(scope="module", autouse=True)
def _aws_env():
    saved = dict(os.environ)
    os.environ.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/dev/null",
                      AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    yield
    os.environ.clear()
    os.environ.update(saved)


# ---------------------------------------------------------------------------
# model files made on the fly
# ---------------------------------------------------------------------------


def _dataset(n: int = 400):
    """A small deterministic 3-feature dataset: label 1 when a weighted sum is high."""
    import random

    rng = random.Random(7)
    x = [[rng.uniform(-2, 2) for _ in range(3)] for _ in range(n)]
    y = [int(a + 0.5 * b - c > 0) for a, b, c in x]
    return x, y


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="module")
def sklearn_models(model_dir):
    """Three fitted estimators and their joblib files (None when scikit-learn is missing)."""
    if not _installed("sklearn"):
        return None
    import joblib
    from sklearn.linear_model import LinearRegression, LogisticRegression

    x, y = _dataset()
    binary = LogisticRegression().fit(x, y)
    regressor = LinearRegression().fit(x, [a * 2 + b - c for a, b, c in x])
    labels = ["low" if a < -0.7 else "mid" if a < 0.7 else "high" for a, _, _ in x]
    multi = LogisticRegression(max_iter=500).fit(x, labels)
    paths = {}
    for name, est in (("binary", binary), ("regressor", regressor), ("multi", multi)):
        paths[name] = model_dir / f"{name}.joblib"
        joblib.dump(est, paths[name])
    paths["garbage"] = model_dir / "garbage.joblib"
    paths["garbage"].write_bytes(b"this is not a pickle")
    return {"binary": binary, "regressor": regressor, "multi": multi, "paths": paths}


@pytest.fixture(scope="module")
def xgb_model(model_dir):
    """A small binary:logistic booster and its JSON file (None when XGBoost is missing)."""
    if not _installed("xgboost"):
        return None
    import numpy as np
    import xgboost

    x, y = _dataset()
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1, "seed": 1},
                            xgboost.DMatrix(np.asarray(x), label=np.asarray(y)), num_boost_round=20)
    path = model_dir / "xgb.json"
    booster.save_model(str(path))
    return {"booster": booster, "path": path}


def _need(fixture_value, package: str):
    if fixture_value is None:
        pytest.skip(f"{package} is not installed (pip install {package})")
    return fixture_value


@pytest.fixture(scope="module")
def taxi_csv(model_dir):
    """The NAB taxi series when the shared copy exists, else a CSV written from demo-taxi."""
    if NAB_TAXI.is_file():
        return NAB_TAXI
    path = model_dir / "taxi.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value"])
        w.writerows(demo_taxi_series(2000))
    return path


@pytest.fixture(scope="module")
def config(sklearn_models, xgb_model, taxi_csv, model_dir):
    endpoints = {
        DEMO: {"model": "rcf", "train": "demo-taxi"},
        "taxi-csv-shingled": {"model": "rcf", "train_csv": str(taxi_csv), "column": "value",
                              "shingle_size": 2, "num_trees": 50, "seed": 1},
        "missing-file": {"model": "rcf", "train_csv": str(model_dir / "nope.csv"), "column": "value"},
    }
    if sklearn_models:
        paths = sklearn_models["paths"]
        endpoints.update({
            "churn": {"model": "sklearn", "path": str(paths["binary"])},
            "price": {"model": "sklearn", "path": str(paths["regressor"])},
            "tier": {"model": "sklearn", "path": str(paths["multi"])},
            "garbage-file": {"model": "sklearn", "path": str(paths["garbage"])},
        })
    if xgb_model:
        endpoints.update({
            "xgb": {"model": "xgboost", "path": str(xgb_model["path"])},
            "xgb-one-line": {"model": "xgboost", "path": str(xgb_model["path"]), "csv_output": "one-line"},
        })
    return {"endpoints": endpoints}


@pytest.fixture(scope="module")
def svc(config):
    with serve(config, workers=2) as service:
        yield service


@pytest.fixture(scope="module")
def cm(svc):
    return _client("comprehend", svc.url)


@pytest.fixture(scope="module")
def sm(svc):
    return _client("sagemaker-runtime", svc.url)


def _invoke(sm, endpoint: str, body: bytes | str, accept: str | None = None, content_type: str = "text/csv"):
    kw = {"Accept": accept} if accept else {}
    r = sm.invoke_endpoint(EndpointName=endpoint, Body=body, ContentType=content_type, **kw)
    return r["ContentType"], r["Body"].read()


def _error(excinfo) -> tuple[str, int, dict]:
    resp = excinfo.value.response
    return resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"], resp


def _raw(svc, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    host, port = svc.url.rsplit("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# Comprehend
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("text,label", [
    ("I love this product, it is wonderful!", "POSITIVE"),
    ("Today is my birthday, I am so happy.", "POSITIVE"),
    ("Worst purchase ever. Broken on arrival.", "NEGATIVE"),
    ("I hate waiting in line. It was awful.", "NEGATIVE"),
    ("The package arrived on Tuesday.", "NEUTRAL"),
    ("The meeting is at 3pm in room 204.", "NEUTRAL"),
    ("The food was great but the service was terrible.", "MIXED"),
    ("Great camera, terrible battery.", "MIXED"),
])
def test_detect_sentiment_labels_clear_sentences(cm, text, label):
    r = cm.detect_sentiment(Text=text, LanguageCode="en")
    scores = r["SentimentScore"]
    assert r["Sentiment"] == label
    assert set(scores) == {"Positive", "Negative", "Neutral", "Mixed"}
    assert math.isclose(sum(scores.values()), 1.0, abs_tol=1e-9)
    assert max(scores, key=scores.get) == label.capitalize()  # the label holds the top score
    assert all(0.0 <= v <= 1.0 for v in scores.values())


def test_mixed_rule_needs_both_polarities_above_threshold():
    t = MIXED_MIN_SHARE
    assert map_vader(t, t, 1 - 2 * t, 0.0)[0] == "MIXED"
    assert map_vader(t - 0.01, 0.5, 0.5, -0.6)[0] == "NEGATIVE"
    assert map_vader(0.5, t - 0.01, 0.5, 0.6)[0] == "POSITIVE"
    assert map_vader(0.03, 0.0, 0.97, 0.04)[0] == "NEUTRAL"  # below VADER's 0.05 compound threshold
    label, scores = map_vader(0.3, 0.3, 0.4, 0.0)
    assert label == "MIXED" and scores["Mixed"] == 1.0  # perfectly balanced: full confidence
    label, scores = map_vader(0.0, 0.0, 1.0, 0.0)
    assert (label, scores) == ("NEUTRAL", {"Positive": 0.0, "Negative": 0.0, "Neutral": 1.0, "Mixed": 0.0})


def test_batch_detect_sentiment_results_in_order_with_per_item_errors(cm):
    texts = ["I love it.", "I hate it.", "x" * 5001, "It is a chair.", "é" * 2500, "é" * 2501]
    r = cm.batch_detect_sentiment(TextList=texts, LanguageCode="en")
    assert [i["Index"] for i in r["ResultList"]] == [0, 1, 3, 4]  # 2,500 x 2-byte chars = 5,000 bytes: fits
    assert [i["Sentiment"] for i in r["ResultList"][:3]] == ["POSITIVE", "NEGATIVE", "NEUTRAL"]
    assert [(e["Index"], e["ErrorCode"]) for e in r["ErrorList"]] == [
        (2, "TEXT_SIZE_LIMIT_EXCEEDED"), (5, "TEXT_SIZE_LIMIT_EXCEEDED")]
    assert "5002 bytes" in r["ErrorList"][1]["ErrorMessage"]
    single = cm.detect_sentiment(Text="I love it.", LanguageCode="en")
    assert r["ResultList"][0]["SentimentScore"] == single["SentimentScore"]


def test_batch_of_25_is_accepted_and_26_refused(cm):
    r = cm.batch_detect_sentiment(TextList=["good day"] * 25, LanguageCode="en")
    assert len(r["ResultList"]) == 25 and r["ErrorList"] == []
    with pytest.raises(ClientError) as e:
        cm.batch_detect_sentiment(TextList=["good day"] * 26, LanguageCode="en")
    code, status, resp = _error(e)
    assert (code, status) == ("BatchSizeLimitExceededException", 400)
    assert "limit of 25" in resp["Error"]["Message"]


def test_text_over_5000_bytes_is_refused(cm):
    with pytest.raises(cm.exceptions.TextSizeLimitExceededException) as e:
        cm.detect_sentiment(Text="€" * 1667, LanguageCode="en")  # 5,001 bytes
    assert _error(e)[1] == 400 and "5001 bytes" in _error(e)[2]["Error"]["Message"]
    assert cm.detect_sentiment(Text="€" * 1666, LanguageCode="en")["Sentiment"]  # 4,998 bytes


@pytest.mark.parametrize("lang", ["es", "de", "ja", "zh-TW"])
def test_languages_vader_cannot_score_fail_the_whole_request(cm, lang):
    with pytest.raises(cm.exceptions.UnsupportedLanguageException):
        cm.detect_sentiment(Text="hola", LanguageCode=lang)
    with pytest.raises(cm.exceptions.UnsupportedLanguageException) as e:
        cm.batch_detect_sentiment(TextList=["hola", "adios"], LanguageCode=lang)
    assert _error(e)[1] == 400


def test_language_outside_comprehend_list_is_a_validation_error(cm):
    with pytest.raises(ClientError) as e:
        cm.detect_sentiment(Text="hello", LanguageCode="xx")
    code, status, resp = _error(e)
    assert (code, status) == ("ValidationException", 400)
    assert "enum value set" in resp["Error"]["Message"]


def _comprehend_raw(svc, op: str, body: bytes, content_type: str = "application/x-amz-json-1.1"):
    return _raw(svc, "POST", "/", body, {"X-Amz-Target": TARGET + op, "Content-Type": content_type})


@pytest.mark.parametrize("op,body,content_type,code", [
    ("DetectSentiment", b"{not json", "application/x-amz-json-1.1", "SerializationException"),
    ("DetectSentiment", b"[1, 2]", "application/x-amz-json-1.1", "SerializationException"),
    ("DetectSentiment", b'{"LanguageCode": "en"}', "application/x-amz-json-1.1", "ValidationException"),
    ("DetectSentiment", b'{"Text": "hi"}', "application/x-amz-json-1.1", "ValidationException"),
    ("DetectSentiment", b'{"Text": 5, "LanguageCode": "en"}', "application/x-amz-json-1.1", "SerializationException"),
    ("DetectSentiment", b'{"Text": "", "LanguageCode": "en"}', "application/x-amz-json-1.1", "ValidationException"),
    ("DetectSentiment", b'{"Text": "hi", "LanguageCode": "en"}', "text/plain", "SerializationException"),
    ("BatchDetectSentiment", b'{"LanguageCode": "en"}', "application/x-amz-json-1.1", "ValidationException"),
    ("BatchDetectSentiment", b'{"TextList": [], "LanguageCode": "en"}', "application/x-amz-json-1.1",
     "ValidationException"),
    ("BatchDetectSentiment", b'{"TextList": "abc", "LanguageCode": "en"}', "application/x-amz-json-1.1",
     "SerializationException"),
    ("DetectEntities", b'{"Text": "hi", "LanguageCode": "en"}', "application/x-amz-json-1.1",
     "UnknownOperationException"),
    ("DetectSentiment", b"\xff\xfe\x00", "application/x-amz-json-1.1", "SerializationException"),
])
def test_malformed_comprehend_requests_get_json_1_1_errors(svc, op, body, content_type, code):
    status, headers, payload = _comprehend_raw(svc, op, body, content_type)
    assert status == 400
    assert headers["content-type"] == "application/x-amz-json-1.1"
    doc = json.loads(payload)
    assert doc["__type"] == code and doc["message"]
    assert headers["x-amzn-requestid"]


def test_oversized_comprehend_body_is_refused_and_the_connection_survives(svc):
    host, port = svc.url.rsplit("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"X-Amz-Target": TARGET + "DetectSentiment", "Content-Type": "application/x-amz-json-1.1"}
    conn.request("POST", "/", body=b" " * (2 << 20), headers=headers)
    r = conn.getresponse()
    assert r.status == 413 and json.loads(r.read())["message"].startswith("HTTP content length exceeded")
    conn.request("POST", "/", body=b'{"Text": "good", "LanguageCode": "en"}', headers=headers)
    r = conn.getresponse()  # same connection: the oversized body was drained, not left in the stream
    assert r.status == 200 and json.loads(r.read())["Sentiment"] == "POSITIVE"
    conn.close()


# ---------------------------------------------------------------------------
# SageMaker Runtime: Random Cut Forest
# ---------------------------------------------------------------------------


def test_rcf_answers_builtin_json_by_default_and_csv_or_jsonlines_on_request(sm):
    ctype, body = _invoke(sm, DEMO, b"12000\n51000\n")
    assert ctype == "application/json"
    scores = json.loads(body)["scores"]
    assert len(scores) == 2 and all(set(s) == {"score"} and isinstance(s["score"], float) for s in scores)
    assert scores[1]["score"] > scores[0]["score"]
    ctype, body = _invoke(sm, DEMO, b"12000\n51000\n", accept="text/csv")
    assert ctype.startswith("text/csv")
    assert [float(v) for v in body.decode().splitlines()] == [s["score"] for s in scores]
    ctype, body = _invoke(sm, DEMO, b"12000\n51000\n", accept="application/jsonlines")
    assert ctype == "application/jsonlines"
    assert [json.loads(line) for line in body.decode().splitlines()] == scores
    assert json.loads(_invoke(sm, DEMO, b"12000\n51000\n", accept="*/*")[1])["scores"] == scores


def test_rcf_scores_are_deterministic_and_independent_of_batching(sm):
    one = [json.loads(_invoke(sm, DEMO, f"{v}\n")[1])["scores"][0]["score"] for v in (300, 12000, 51000)]
    together = [s["score"] for s in json.loads(_invoke(sm, DEMO, b"300\n12000\n51000\n")[1])["scores"]]
    assert one == together


def test_rcf_ranks_each_injected_demo_anomaly_in_the_top_percent(sm):
    series = demo_taxi_series()
    body = "".join(f"{v}\n" for _, v in series).encode()
    scores = [s["score"] for s in json.loads(_invoke(sm, DEMO, body)[1])["scores"]]
    assert len(scores) == len(series) == 10_320
    order = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)
    rank = {i: r for r, i in enumerate(order)}
    top = len(scores) // 100
    for index, name in demo_taxi_events().items():
        assert rank[index] < top, f"{name} at {index} ranks {rank[index]} (top 1% is {top})"
    typical = sorted(scores)[len(scores) // 2]
    assert min(scores[i] for i in demo_taxi_anomalies()) > 2 * typical


def test_rcf_trained_from_csv_column_with_shingles(sm, taxi_csv):
    values = [float(r["value"]) for r in csv.DictReader(taxi_csv.open())][:200]
    rows = "".join(f"{a},{b}\n" for a, b in itertools.pairwise(values))  # shingled by the caller, as AWS does
    _, body = _invoke(sm, "taxi-csv-shingled", rows)
    normal = [s["score"] for s in json.loads(body)["scores"]]
    _, body = _invoke(sm, "taxi-csv-shingled", f"{values[0]},{values[0] * 5}\n")  # a jump no window shows
    assert json.loads(body)["scores"][0]["score"] > max(normal)
    with pytest.raises(sm.exceptions.ModelError) as e:
        _invoke(sm, "taxi-csv-shingled", "1000\n")
    assert "takes 2 per row" in _error(e)[2]["OriginalMessage"]


def test_rcf_accepts_builtin_json_instances(sm):
    doc = {"instances": [{"features": [12000]}, {"features": [51000]}]}
    _, body = _invoke(sm, DEMO, json.dumps(doc), content_type="application/json")
    _, same = _invoke(sm, DEMO, "12000\n51000\n")
    assert json.loads(body) == json.loads(same)


# ---------------------------------------------------------------------------
# SageMaker Runtime: errors
# ---------------------------------------------------------------------------


def test_unknown_endpoint_is_a_validation_error(sm):
    with pytest.raises(ClientError) as e:
        _invoke(sm, "no-such-endpoint", "1\n")
    code, status, resp = _error(e)
    assert (code, status) == ("ValidationError", 400)
    assert resp["Error"]["Message"] == "Endpoint no-such-endpoint of account 123456789012 not found."


@pytest.mark.parametrize("body,needle", [
    (b"abc\n", "could not convert string to float: 'abc'"),
    (b"1\n2,3\n", "row 2 has 2 values; this model takes 1"),
    (b"1\n\n,\n", "row 2: empty value"),
    (b"nan\n", "finite"),
    (b"\xff\xfe\n", "not UTF-8"),
    (b"", "no data"),
    (b'"unterminated\n', "could not convert"),
])
def test_bad_rows_are_model_errors_shaped_like_aws(sm, body, needle):
    with pytest.raises(sm.exceptions.ModelError) as e:
        _invoke(sm, DEMO, body)
    code, status, resp = _error(e)
    assert (code, status) == ("ModelError", 424)
    assert resp["OriginalStatusCode"] == 400
    assert needle in resp["OriginalMessage"]
    assert resp["LogStreamArn"] == f"arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/{DEMO}"
    assert resp["Error"]["Message"].startswith("Received client error (400) from primary with message")


def test_wrong_content_type_and_accept_are_model_errors(sm):
    with pytest.raises(sm.exceptions.ModelError) as e:
        _invoke(sm, DEMO, b"1\n", content_type="application/x-recordio-protobuf")
    assert _error(e)[2]["OriginalStatusCode"] == 415
    with pytest.raises(sm.exceptions.ModelError) as e:
        _invoke(sm, DEMO, b"1\n", accept="image/png")
    assert _error(e)[2]["OriginalStatusCode"] == 406


def test_body_limit_is_6_mib_like_aws(sm):
    limit = 6_291_456
    with pytest.raises(sm.exceptions.ModelError):  # exactly at the limit: accepted, then refused by the model
        _invoke(sm, DEMO, b"x" * limit)
    with pytest.raises(ClientError) as e:
        _invoke(sm, DEMO, b"x" * (limit + 1))
    code, status, resp = _error(e)
    assert (code, status) == ("413", 413)  # SageMaker sends no error type here: boto3 shows the status
    assert resp["Error"]["Message"] == f"HTTP content length exceeded {limit} bytes."
    assert json.loads(_invoke(sm, DEMO, b"5\n")[1])["scores"]  # the service is still fine


def test_failed_endpoints_report_why_and_others_keep_working(svc, sm):
    status = svc.status()["endpoints"]
    assert status["missing-file"]["status"] == "Failed" and "cannot read train_csv" in status["missing-file"]["error"]
    if "garbage-file" in status:
        assert status["garbage-file"]["status"] == "Failed" and "cannot load" in status["garbage-file"]["error"]
    assert status[DEMO]["status"] == "InService"
    with pytest.raises(ClientError) as e:
        _invoke(sm, "missing-file", "1\n")
    code, status_code, resp = _error(e)
    assert (code, status_code) == ("ValidationError", 400)
    assert "failed to load" in resp["Error"]["Message"] and "nope.csv" in resp["Error"]["Message"]


# ---------------------------------------------------------------------------
# SageMaker Runtime: scikit-learn and XGBoost
# ---------------------------------------------------------------------------

ROWS = [[0.5, -1.0, 0.25], [-1.5, 0.3, 1.2], [1.9, 1.1, -0.4]]
ROWS_CSV = "".join(",".join(map(str, r)) + "\n" for r in ROWS)


def test_sklearn_classifier_answers_positive_class_probability(sm, sklearn_models):
    sklearn_models = _need(sklearn_models, "scikit-learn")
    ctype, body = _invoke(sm, "churn", ROWS_CSV)
    assert ctype.startswith("text/csv")
    expected = sklearn_models["binary"].predict_proba(ROWS)[:, 1]
    assert [float(v) for v in body.decode().splitlines()] == pytest.approx(list(expected), abs=1e-12)
    _, body = _invoke(sm, "churn", ROWS_CSV, accept="application/json")
    preds = json.loads(body)["predictions"]
    assert [p["predicted_label"] for p in preds] == list(sklearn_models["binary"].predict(ROWS))
    assert [p["score"] for p in preds] == pytest.approx(list(expected), abs=1e-12)


def test_sklearn_regressor_and_multiclass(sm, sklearn_models):
    sklearn_models = _need(sklearn_models, "scikit-learn")
    _, body = _invoke(sm, "price", ROWS_CSV)
    assert [float(v) for v in body.decode().splitlines()] == pytest.approx(
        list(sklearn_models["regressor"].predict(ROWS)), abs=1e-9)
    _, body = _invoke(sm, "tier", ROWS_CSV, accept="application/json")
    preds = json.loads(body)["predictions"]
    multi = sklearn_models["multi"]
    assert [p["predicted_label"] for p in preds] == list(multi.predict(ROWS))
    assert all(len(p["score"]) == 3 and math.isclose(sum(p["score"]), 1.0) for p in preds)
    _, body = _invoke(sm, "tier", ROWS_CSV)  # CSV: a row's class probabilities on its own line
    assert [len(line.split(",")) for line in body.decode().splitlines()] == [3, 3, 3]


def test_xgboost_answers_like_builtin_xgboost(sm, xgb_model):
    xgb_model = _need(xgb_model, "xgboost-cpu")
    import numpy as np
    import xgboost

    expected = xgb_model["booster"].predict(xgboost.DMatrix(np.asarray(ROWS)))
    ctype, body = _invoke(sm, "xgb", ROWS_CSV)
    assert ctype.startswith("text/csv")
    assert [float(v) for v in body.decode().splitlines()] == pytest.approx(list(expected), abs=1e-6)
    _, body = _invoke(sm, "xgb-one-line", ROWS_CSV)
    assert b"\n" not in body and [float(v) for v in body.decode().split(",")] == pytest.approx(list(expected),
                                                                                             abs=1e-6)
    _, body = _invoke(sm, "xgb", ROWS_CSV, accept="application/json")
    assert [p["predicted_label"] for p in json.loads(body)["predictions"]] == [int(p >= 0.5) for p in expected]
    _, body = _invoke(sm, "xgb", "0.5,,0.25\n")  # an empty field is a missing value, as in SageMaker's XGBoost
    assert 0.0 <= float(body) <= 1.0


# ---------------------------------------------------------------------------
# HTTP robustness and concurrency
# ---------------------------------------------------------------------------


def test_many_requests_on_one_keep_alive_connection(svc):
    host, port = svc.url.rsplit("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    sock_ids = set()
    for i in range(20):
        conn.request("POST", f"/endpoints/{DEMO}/invocations", body=f"{1000 + i}\n",
                     headers={"Content-Type": "text/csv"})
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["scores"]
        sock_ids.add(id(conn.sock))
    assert len(sock_ids) == 1  # never reconnected
    conn.close()


def test_chunked_request_body_is_accepted(svc):
    host, port = svc.url.rsplit("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", f"/endpoints/{DEMO}/invocations", body=iter([b"100\n", b"51000\n"]),
                 headers={"Content-Type": "text/csv"}, encode_chunked=True)
    r = conn.getresponse()
    assert r.status == 200 and len(json.loads(r.read())["scores"]) == 2
    conn.close()


def test_hundreds_of_concurrent_keep_alive_connections(svc):
    host, port = svc.url.rsplit("//", 1)[1].split(":")
    conns = [http.client.HTTPConnection(host, int(port), timeout=30) for _ in range(200)]
    try:
        for _ in range(2):  # every connection open at once, each used twice
            for c in conns:
                c.request("POST", f"/endpoints/{DEMO}/invocations", body=b"12000\n",
                          headers={"Content-Type": "text/csv"})
            for c in conns:
                r = c.getresponse()
                assert r.status == 200 and json.loads(r.read())["scores"]
    finally:
        for c in conns:
            c.close()


@pytest.mark.parametrize("kind,module,hint", [("xgboost", "xgboost", "pip install xgboost-cpu"),
                                              ("sklearn", "sklearn", "pip install scikit-learn"),
                                              ("rcf", "krcf", "pip install 'krcf>=0.4'")])
def test_missing_model_library_fails_only_that_endpoint_with_a_hint(monkeypatch, tmp_path, kind, module, hint):
    from sqlml.local.httpd import App

    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    (tmp_path / "m.bin").write_bytes(b"x")
    spec = {"model": kind, "train": "demo-taxi"} if kind == "rcf" else {"model": kind, "path": str(tmp_path / "m.bin")}
    lines = []
    app = App.load(load_config({"endpoints": {"broken": spec, "ok-demo": {"model": "rcf", "train": "demo-taxi",
                                                                          "demo_points": 50}}}), lines.append)
    status = app.status()["endpoints"]
    assert status["broken"]["status"] == "Failed" and hint in status["broken"]["error"]
    assert any("broken FAILED" in line and hint in line for line in lines)
    if kind != "rcf":
        assert status["ok-demo"]["status"] == "InService"


def test_comprehend_without_its_model_answers_an_error_instead_of_crashing():
    from sqlml.local.comprehend import Comprehend
    from sqlml.local.wire import ApiError

    with pytest.raises(ApiError) as e:
        Comprehend(unavailable="vaderSentiment is not installed").handle(TARGET + "DetectSentiment", "", b"{}")
    assert (e.value.status, e.value.code) == (500, "InternalServerException")
    assert "vaderSentiment is not installed" in e.value.message


def _send_raw(svc, data: bytes, wait_s: float = 5.0) -> bytes:
    host, port = svc.url.rsplit("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=wait_s) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.parametrize("data,status", [
    (b"GARBAGE\r\n\r\n", b"400"),
    (b"GET / HTTP/9.9\r\n\r\n", b"505"),
    (b"POST / HTTP/1.1\r\nContent-Length: banana\r\n\r\n", b"400"),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"400"),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", b"414"),
    (b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"404"),
])
def test_malformed_http_gets_an_error_and_the_service_survives(svc, sm, data, status):
    answer = _send_raw(svc, data)
    assert answer.split(b" ", 2)[1] == status, answer[:200]
    body = answer.split(b"\r\n\r\n", 1)[1]
    assert json.loads(body)["message"]
    assert json.loads(_invoke(sm, DEMO, b"5\n")[1])["scores"]


def test_stalled_request_is_closed_after_idle_timeout_without_blocking_others():
    # its own service: a short idle timeout would also close the shared clients' pooled connections
    config = {"server": {"idle_timeout_s": 1.5},
              "endpoints": {"d": {"model": "rcf", "train": "demo-taxi", "demo_points": 100}}}
    with serve(config, workers=1) as s:
        host, port = s.url.rsplit("//", 1)[1].split(":")
        stalled = socket.create_connection((host, int(port)), timeout=10)
        stalled.sendall(b"POST / HTTP/1.1\r\nContent-Length: 100\r\nX-Amz-Target: x\r\n\r\nonly part")
        t0 = time.monotonic()
        sm = _client("sagemaker-runtime", s.url)
        assert json.loads(_invoke(sm, "d", b"5\n")[1])["scores"]  # others are served meanwhile
        assert stalled.recv(100) == b""  # closed by the server after idle_timeout_s
        assert 1.0 < time.monotonic() - t0 < 6
        stalled.close()


def test_16_threads_of_mixed_calls_are_all_answered_by_both_workers(svc, cm, sm):
    expected_score = json.loads(_invoke(sm, DEMO, b"51000\n")[1])["scores"][0]["score"]

    def work(i: int) -> list:
        out = []
        for j in range(15):
            if (i + j) % 3 == 0:
                out.append(cm.detect_sentiment(Text="What a wonderful day", LanguageCode="en")["Sentiment"])
            elif (i + j) % 3 == 1:
                r = cm.batch_detect_sentiment(TextList=["awful"] * 10, LanguageCode="en")
                out.append({x["Sentiment"] for x in r["ResultList"]})
            else:
                out.append(json.loads(_invoke(sm, DEMO, b"51000\n")[1])["scores"][0]["score"])
        return out

    with ThreadPoolExecutor(16) as pool:
        results = [x for chunk in pool.map(work, range(16)) for x in chunk]
    assert len(results) == 16 * 15
    assert all(r in ("POSITIVE", {"NEGATIVE"}, expected_score) for r in results)

    def pid(_):  # one new connection each: the shared socket spreads them over the workers
        with urllib.request.urlopen(f"{svc.url}/ping", timeout=5) as r:
            return json.loads(r.read())["pid"]

    with ThreadPoolExecutor(16) as pool:
        pids = set(pool.map(pid, range(64)))
    assert len(pids) == 2


# ---------------------------------------------------------------------------
# cross-check with moto (an independent implementation of the wire format)
# ---------------------------------------------------------------------------


def _shape(value):
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


@pytest.fixture(scope="module")
def moto_url():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_response_shapes_match_moto(cm, sm, moto_url):
    moto_cm = _client("comprehend", moto_url)
    ours = cm.detect_sentiment(Text="I love it", LanguageCode="en")
    theirs = moto_cm.detect_sentiment(Text="I love it", LanguageCode="en")
    assert _shape(ours) == _shape(theirs)

    results = {"results": [{"Body": "0.5\n", "ContentType": "text/csv", "InvokedProductionVariant": "AllTraffic"}]}
    req = urllib.request.Request(f"{moto_url}/moto-api/static/sagemaker/endpoint-results",
                                 data=json.dumps(results).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()
    moto_sm = _client("sagemaker-runtime", moto_url)
    theirs = moto_sm.invoke_endpoint(EndpointName="any", Body=b"1\n", ContentType="text/csv", Accept="text/csv")
    ours = sm.invoke_endpoint(EndpointName=DEMO, Body=b"1\n", ContentType="text/csv", Accept="text/csv")
    assert type(ours["Body"]) is type(theirs["Body"])
    for key in ("ContentType", "InvokedProductionVariant"):
        assert type(ours[key]) is type(theirs[key])
    assert set(ours) - {"ResponseMetadata"} <= set(theirs) - {"ResponseMetadata"}
    assert ours["InvokedProductionVariant"] == theirs["InvokedProductionVariant"] == "AllTraffic"


# ---------------------------------------------------------------------------
# configuration, data, process lifecycle
# ---------------------------------------------------------------------------


def test_demo_taxi_series_is_deterministic_and_taxi_like():
    a, b = demo_taxi_series(), demo_taxi_series()
    assert a == b and len(a) == 10_320
    assert a[0][0] == "2014-07-01 00:00:00" and a[-1][0] == "2015-01-31 23:30:00"
    assert all(isinstance(v, int) and v >= 0 for _, v in a)
    anomalies = demo_taxi_anomalies()
    assert len(anomalies) == 5 and anomalies == sorted(demo_taxi_events())
    normal = [v for i, (_, v) in enumerate(a) if i not in set(anomalies)]
    by_hour = {h: [v for (ts, v) in a if int(ts[11:13]) == h] for h in (5, 19)}
    assert sum(by_hour[19]) / len(by_hour[19]) > 5 * sum(by_hour[5]) / len(by_hour[5])  # daily cycle
    assert all(a[i][1] > max(normal) or a[i][1] < min(normal) for i in anomalies)
    assert demo_taxi_series(100) == demo_taxi_series(100) and len(demo_taxi_anomalies(100)) >= 3


@pytest.mark.parametrize("doc,needle", [
    ({"endpoints": {"x": {"model": "rcf"}}}, "needs training data"),
    ({"endpoints": {"x": {"model": "rcf", "train": "demo-taxi", "num_trees": 0}}}, "num_trees"),
    ({"endpoints": {"x": {"model": "rcf", "train_csv": "a.csv"}}}, "column"),
    ({"endpoints": {"x": {"model": "sklearn"}}}, "needs path"),
    ({"endpoints": {"x": {"model": "torch", "path": "m"}}}, "model must be one of"),
    ({"endpoints": {"bad_name!": {"model": "xgboost", "path": "m"}}}, "invalid endpoint name"),
    ({"endpoints": {"x": {"model": "xgboost", "path": "m", "colour": 1}}}, "unknown key(s) colour"),
    ({"server": {"port": 70000}}, "server.port"),
    ({"servers": {}}, "unknown top-level"),
])
def test_config_errors_say_what_is_allowed(doc, needle):
    with pytest.raises(ConfigError) as e:
        load_config(doc)
    assert needle in str(e.value)


def test_toml_config_resolves_paths_next_to_the_file(tmp_path):
    (tmp_path / "cfg.toml").write_text('[endpoints.a]\nmodel = "xgboost"\npath = "m.json"\n')
    cfg = load_config(tmp_path / "cfg.toml")
    assert cfg.endpoints["a"].path == str(tmp_path / "m.json")
    assert load_config(None).endpoints[DEMO].train == "demo-taxi"  # the shipped default


def test_in_process_service_with_zero_workers():
    with serve({"endpoints": {"d": {"model": "rcf", "train": "demo-taxi", "demo_points": 500}}},
               workers=0) as s:
        sm = _client("sagemaker-runtime", s.url)
        assert json.loads(_invoke(sm, "d", b"5\n")[1])["scores"]
        assert s.status()["pid"] == os.getpid()
        url = s.url
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/ping", timeout=2)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for an init that does not reap counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def test_cli_prints_ready_line_serves_and_stops_cleanly_on_sigterm(tmp_path):
    port_file = tmp_path / "port"
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[endpoints.d]\nmodel = "rcf"\ntrain = "demo-taxi"\ndemo_points = 500\n'
                   '[endpoints.broken]\nmodel = "xgboost"\npath = "missing.json"\n')
    env = dict(os.environ, PYTHONPATH=str(Path(__import__("sqlml").__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-m", "sqlml.local", "--config", str(cfg), "--port", "0",
                             "--workers", "2", "--port-file", str(port_file), "--verbose"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("sqlml serve listening on http://127.0.0.1:")
        url = line.split()[-1]
        assert port_file.read_text().strip() == url.rsplit(":", 1)[1]
        workers = _children_of(proc.pid)
        assert len(workers) == 2
        sm = _client("sagemaker-runtime", url)
        assert json.loads(_invoke(sm, "d", b"7\n")[1])["scores"]
        os.kill(workers[0], signal.SIGKILL)  # a crashed worker is replaced
        deadline = time.monotonic() + 5
        while len([p for p in _children_of(proc.pid) if _alive(p)]) < 2 or workers[0] in _children_of(proc.pid):
            assert time.monotonic() < deadline, _children_of(proc.pid)
            time.sleep(0.05)
        workers = _children_of(proc.pid)
        for _ in range(10):  # fresh connections land on either worker
            assert json.loads(_invoke(_client("sagemaker-runtime", url), "d", b"7\n")[1])["scores"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        err = proc.stderr.read()
        assert "endpoint broken FAILED to load" in err and "missing.json" in err
        assert "POST /endpoints/d/invocations 200" in err  # --verbose: one compact line per request
        assert not any(_alive(pid) for pid in workers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_refuses_a_bad_config_with_exit_status_2(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[endpoints.x]\nmodel = 'rcf'\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__import__("sqlml").__file__).resolve().parents[1]))
    r = subprocess.run([sys.executable, "-m", "sqlml.local", "--config", str(cfg)], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 2 and "needs training data" in r.stderr


def test_workers_exit_when_the_supervisor_is_killed(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__import__("sqlml").__file__).resolve().parents[1]))
    cfg = tmp_path / "c.toml"
    cfg.write_text('[endpoints.d]\nmodel = "rcf"\ntrain = "demo-taxi"\ndemo_points = 100\n')
    proc = subprocess.Popen([sys.executable, "-m", "sqlml.local", "--config", str(cfg), "--port", "0",
                             "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        assert proc.stdout.readline().startswith(b"sqlml serve listening on")
        workers = _children_of(proc.pid)
        assert len(workers) == 2
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in workers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stopping_the_service_frees_the_port(config):
    s = serve({"endpoints": {"d": {"model": "rcf", "train": "demo-taxi", "demo_points": 100}}}, workers=1)
    host, port = s.url.rsplit("//", 1)[1].split(":")
    assert s.status()["endpoints"]["d"]["status"] == "InService"
    s.stop()
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=2).close()
    s.stop()  # idempotent
