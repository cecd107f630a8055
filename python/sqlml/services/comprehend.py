"""Amazon Comprehend sentiment: request limits, the two operations, error mapping.

One text goes as DetectSentiment, several as BatchDetectSentiment (at most 25), both
AWS JSON 1.1 sent by the service's LeanClient (lean.py). The answer's JSON is read here
and every field is checked: BatchDetectSentiment answers per item, an ErrorList entry
fails only the row it names, and a ResultList that does not account for every text
fails the batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import botocore.exceptions

from ..errors import ArgumentError, ServiceError

LANGUAGES = frozenset("en es fr de it pt ar hi ja ko zh zh-TW".split())
MAX_TEXT_BYTES = 5000
MAX_BATCH_TEXTS = 25
LABELS = ("POSITIVE", "NEGATIVE", "NEUTRAL", "MIXED")
_SCORE_FIELD = {label: label.lower() for label in LABELS}
_LABEL_BYTES = {label: label.encode("ascii") for label in LABELS}
TARGET_PREFIX = "Comprehend_20171127."
JSON_1_1 = "application/x-amz-json-1.1"

# Codes that mean "try again later" rather than "this request is wrong".
RETRYABLE_CODES = frozenset(
    {"ThrottlingException", "TooManyRequestsException", "InternalServerException", "ServiceUnavailableException",
     "RequestTimeout", "RequestTimeoutException", "ProvisionedThroughputExceededException"}
)


@dataclass(frozen=True)
class Sentiment:
    label: str
    positive: float
    negative: float
    neutral: float
    mixed: float

    @property
    def confidence(self) -> float:
        return getattr(self, _SCORE_FIELD[self.label])

    @property
    def label_bytes(self) -> bytes:
        return _LABEL_BYTES[self.label]

    @classmethod
    def from_wire(cls, item: dict, where: str) -> "Sentiment":
        label = item.get("Sentiment")
        scores = item.get("SentimentScore") or {}
        if label not in LABELS:
            raise ServiceError(f"{where}: unexpected sentiment {label!r}")
        try:
            return cls(label, float(scores["Positive"]), float(scores["Negative"]), float(scores["Neutral"]),
                       float(scores["Mixed"]))
        except (KeyError, TypeError, ValueError):
            raise ServiceError(f"{where}: malformed SentimentScore {scores!r}") from None


def check_text(text: str, function: str) -> None:
    size = len(text.encode("utf-8"))
    if size == 0:
        raise ArgumentError(f"{function}: text is empty; Comprehend needs 1 to {MAX_TEXT_BYTES} bytes of UTF-8")
    if size > MAX_TEXT_BYTES:
        raise ArgumentError(
            f"{function}: text is {size} bytes; Comprehend accepts at most {MAX_TEXT_BYTES} bytes of UTF-8 "
            f"(use LEFT(text, n) to shorten it)"
        )


def check_language(code: str, function: str) -> str:
    if code not in LANGUAGES:
        raise ArgumentError(
            f"{function}: language {code[:12]!r} unsupported; use {' '.join(sorted(LANGUAGES))}"
        )
    return code


def client_error(exc: Exception, where: str) -> ServiceError:
    """Maps a botocore failure to our ServiceError (message names service and AWS code)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code", "Unknown")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = (err.get("Message") or "")[:200]
        return ServiceError(f"{where} failed: {code}: {message}", code=code,
                            retryable=code in RETRYABLE_CODES or status >= 500 or status == 429)
    if isinstance(exc, (botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError)):
        return ServiceError(f"{where} failed: no answer in time ({type(exc).__name__})", code="Timeout", retryable=True)
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return ServiceError(f"{where} failed: cannot connect to {exc.kwargs.get('endpoint_url', 'the endpoint')}",
                            code="ConnectionError", retryable=True)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return ServiceError(f"{where} failed: no AWS credentials found (see docs/configuration.md: credentials)",
                            code="NoCredentials")
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return ServiceError(f"{where} failed: {type(exc).__name__}: {str(exc)[:200]}", code=type(exc).__name__,
                            # ConnectionClosedError (an HTTPClientError): a pooled keep-alive
                            # connection closed by the server just as it was reused.
                            retryable=isinstance(exc, (botocore.exceptions.ConnectionError,
                                                       botocore.exceptions.HTTPClientError)))
    raise exc


def _call(client, operation: str, params: dict, where: str, wait=None):
    """One JSON 1.1 request; the answer's JSON document (any JSON value), or ServiceError."""
    body = json.dumps(params, separators=(",", ":")).encode()
    try:
        reply = client.send(operation, "/", body, {"X-Amz-Target": TARGET_PREFIX + operation,
                                                   "Content-Type": JSON_1_1}, wait)
    except Exception as exc:  # noqa: BLE001 - mapped or re-raised by client_error
        raise client_error(exc, where) from None
    try:
        return json.loads(reply.body)
    except (ValueError, UnicodeDecodeError):
        raise ServiceError(f"{where}: malformed answer (not JSON: {reply.body[:60]!r})") from None


def detect(client, texts: list[str], language: str, wait=None) -> list[Sentiment | ServiceError]:
    """One request for 1..25 texts through `client` (a LeanClient); per-text results in
    order (an item may be an error). wait: see LeanClient.send."""
    if len(texts) == 1:
        where = f"Comprehend DetectSentiment ({language})"
        reply = _call(client, "DetectSentiment", {"Text": texts[0], "LanguageCode": language}, where, wait)
        if not isinstance(reply, dict):
            raise ServiceError(f"{where}: malformed answer (not a JSON object)")
        return [Sentiment.from_wire(reply, where)]
    where = f"Comprehend BatchDetectSentiment ({language}, {len(texts)} texts)"
    reply = _call(client, "BatchDetectSentiment", {"TextList": texts, "LanguageCode": language}, where, wait)
    if (not isinstance(reply, dict) or not isinstance(reply.get("ResultList", []), list)
            or not isinstance(reply.get("ErrorList", []), list)):
        raise ServiceError(f"{where}: malformed answer (expected an object with ResultList and ErrorList lists)")
    out: list[Sentiment | ServiceError | None] = [None] * len(texts)
    for item in reply.get("ResultList", []):
        index = item.get("Index") if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < len(texts) or out[index] is not None:
            raise ServiceError(f"{where}: result Index {index!r} is out of range or repeated")
        out[index] = Sentiment.from_wire(item, where)
    for item in reply.get("ErrorList", []):
        index = item.get("Index") if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < len(texts) or out[index] is not None:
            raise ServiceError(f"{where}: error Index {index!r} is out of range or repeated")
        code = str(item.get("ErrorCode", "Unknown"))
        out[index] = ServiceError(f"Comprehend BatchDetectSentiment ({language}) failed for this text: {code}: "
                                  f"{str(item.get('ErrorMessage') or '')[:200]}", code=code)
    missing = sum(1 for r in out if r is None)
    if missing:
        raise ServiceError(f"{where}: sent {len(texts)} texts, service accounted for {len(texts) - missing}")
    return out  # type: ignore[return-value]
