"""Local SageMaker Runtime: ``POST /endpoints/{name}/invocations`` (InvokeEndpoint).

Decodes the request body (``text/csv``: RFC 4180, one row per line, as Aurora sends it;
``application/json``: the built-in algorithms' ``{"instances": [{"features": [...]}]}``),
runs the endpoint's model (``models.py``) and encodes the answer per Accept:

* ``text/csv``: one prediction per line (a multiclass row's probabilities comma-joined),
  or, with ``csv_output = "one-line"``, every row's prediction on one line as XGBoost's
  real-time endpoints answer;
* ``application/json``: RCF ``{"scores": [{"score": x}]}``, others linear-learner style
  ``{"predictions": [{"score": x, "predicted_label": y}]}`` (label for classifiers only);
* ``application/jsonlines``: one such object per line.

A missing Accept or ``*/*`` gets what the SageMaker built-in counterpart answers (RCF
JSON, XGBoost and scikit-learn CSV). Errors follow AWS: an unknown endpoint is a
ValidationError (400); anything the model refuses (bad rows, content type, Accept) is a
ModelError (424) whose OriginalStatusCode says what the container answered.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import traceback
from dataclasses import dataclass

from .config import EndpointConfig
from .models import CSV, JSON, Model, ModelInputError, Prediction
from .wire import ApiError, Response, model_error

MAX_BODY_BYTES = 6_291_456  # InvokeEndpoint's payload limit
JSONLINES = "application/jsonlines"
_ACCEPTED = {CSV: CSV, JSON: JSON, JSONLINES: JSONLINES, "application/x-jsonlines": "application/x-jsonlines"}

# csv's default 131,072-character field limit would refuse a legal 6 MB single field
if csv.field_size_limit() < MAX_BODY_BYTES:
    csv.field_size_limit(MAX_BODY_BYTES)


@dataclass
class Endpoint:
    """A configured endpoint: its model, or the reason it failed to load."""

    config: EndpointConfig
    model: Model | None
    error: str | None = None

    @property
    def status(self) -> str:
        return "InService" if self.model is not None else "Failed"


class SageMakerRuntime:
    def __init__(self, endpoints: dict[str, Endpoint], account_id: str, region: str) -> None:
        self.endpoints = endpoints
        self.account_id = account_id
        self.region = region

    def invoke(self, name: str, content_type: str, accept: str, body: bytes) -> Response:
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            raise ApiError(400, "ValidationError", f"Endpoint {name} of account {self.account_id} not found.")
        if endpoint.model is None:
            raise ApiError(400, "ValidationError",
                           f"Endpoint {name} of account {self.account_id} is not available: "
                           f"its model failed to load: {endpoint.error}")
        model = endpoint.model
        try:
            media = _choose_accept(accept, model.default_accept)
            rows = _decode(content_type, body, model)
            try:
                predictions = model.predict(rows)
            except (ModelInputError, KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # noqa: BLE001 - a model bug (even a Rust panic) is a 500 from the "container"
                print(f"sqlml serve: endpoint {name}: model failed on {len(rows)} rows", file=sys.stderr)
                traceback.print_exc(file=sys.stderr)
                raise _ModelFailure(500, f"{type(exc).__name__}: {exc}") from None
            if len(predictions) != len(rows):  # our own invariant: never answer for the wrong rows
                raise _ModelFailure(500, f"model returned {len(predictions)} predictions for {len(rows)} rows")
            out = _encode(predictions, media, model.json_key, endpoint.config.csv_output)
        except ModelInputError as exc:
            raise model_error(name, 400, str(exc), self.account_id, self.region) from None
        except _ModelFailure as exc:
            raise model_error(name, exc.status, exc.message, self.account_id, self.region) from None
        content = f"{CSV}; charset=utf-8" if media == CSV else media
        return Response(200, out, [("Content-Type", content), ("x-Amzn-Invoked-Production-Variant", "AllTraffic")])

    def oversized(self, size: int | None) -> ApiError:
        """What SageMaker answers to a body over the limit: a bare 413, no error type."""
        return ApiError(413, None, f"HTTP content length exceeded {MAX_BODY_BYTES} bytes.")


class _ModelFailure(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _choose_accept(accept: str, default: str) -> str:
    if not accept.strip():
        return default
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media == "*/*":
            return default
        if media in _ACCEPTED:
            return _ACCEPTED[media]
        if media == "text/*":
            return CSV
        if media == "application/*":
            return default if default.startswith("application/") else JSON
    raise _ModelFailure(406, f"Accept type {accept!r} is not supported; use text/csv, application/json "
                             "or application/jsonlines")


def _decode(content_type: str, body: bytes, model: Model) -> list[list[float]]:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == CSV:
        rows = _csv_rows(body, model)
    elif media == JSON:
        rows = _json_rows(body)
    else:
        raise _ModelFailure(415, f"Content type {content_type or None!r} is not supported by this model; "
                                 "use text/csv or application/json")
    if not rows:
        raise ModelInputError("no data in the request body")
    width = model.n_features
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ModelInputError(f"row {i + 1} has {len(row)} value{'s' if len(row) != 1 else ''}; "
                                  f"this model takes {width} per row")
    return rows


def _csv_rows(body: bytes, model: Model) -> list[list[float]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelInputError(f"payload is not UTF-8 text (byte {exc.start})") from None
    if '"' not in text and "\r" not in text:
        records = [line.split(",") for line in text.split("\n") if line]  # same as csv.reader here, faster
    else:
        try:
            records = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
        except csv.Error as exc:
            raise ModelInputError(f"unable to parse CSV payload: {exc}") from None
    missing = math.nan if model.allows_missing else None
    rows: list[list[float]] = []
    for i, record in enumerate(records):
        try:
            rows.append([float(f) for f in record])
        except ValueError:
            rows.append([_field(f, i, missing) for f in record])
    return rows


def _field(text: str, row: int, missing: float | None) -> float:
    if not text.strip():
        if missing is None:
            raise ModelInputError(f"row {row + 1}: empty value; this model needs every value")
        return missing
    try:
        return float(text)
    except ValueError:
        raise ModelInputError(f"row {row + 1}: could not convert string to float: {text[:100]!r}") from None


def _json_rows(body: bytes) -> list[list[float]]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ModelInputError("payload is not valid JSON") from None
    instances = doc.get("instances") if isinstance(doc, dict) else None
    if not isinstance(instances, list):
        raise ModelInputError('JSON payload must be {"instances": [{"features": [numbers]}, ...]}')
    rows = []
    for i, item in enumerate(instances):
        values = item.get("features") if isinstance(item, dict) else item
        if not isinstance(values, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ModelInputError(f"instance {i + 1}: features must be a list of numbers")
        rows.append([float(v) for v in values])
    return rows


def _number(value: float) -> str:
    return repr(float(value))


def _csv_value(score: float | list[float]) -> str:
    return ",".join(map(_number, score)) if isinstance(score, list) else _number(score)


def _item(p: Prediction) -> dict:
    return {"score": p.score} if p.label is None else {"score": p.score, "predicted_label": p.label}


def _encode(predictions: list[Prediction], media: str, json_key: str, csv_output: str) -> bytes:
    if media == CSV:
        values = [_csv_value(p.score) for p in predictions]
        if csv_output == "one-line" and not any(isinstance(p.score, list) for p in predictions):
            return ",".join(values).encode("ascii")
        return ("\n".join(values) + "\n").encode("ascii")
    if media == JSON:
        return json.dumps({json_key: [_item(p) for p in predictions]}).encode("utf-8")
    return ("\n".join(json.dumps(_item(p)) for p in predictions) + "\n").encode("utf-8")
