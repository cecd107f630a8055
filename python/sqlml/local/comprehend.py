"""Local Amazon Comprehend: DetectSentiment and BatchDetectSentiment over JSON 1.1.

Requests are checked with Comprehend's limits (Text 1 to 5,000 UTF-8 bytes, at most 25
texts, LanguageCode one of Comprehend's twelve) and answered with Comprehend's shapes;
``wire.py`` renders the errors. The model is VADER (vaderSentiment, an offline English
lexicon), so only ``en`` is scored: every other supported code is refused with
UnsupportedLanguageException for the whole request, as AWS refuses a language it cannot
handle. ``httpd.py`` routes ``POST /`` with ``X-Amz-Target: Comprehend_20171127.*`` here.

Mapping VADER to Comprehend (:class:`SentimentModel`); VADER gives ``pos``, ``neg``,
``neu`` (shares of the text, summing to 1) and ``compound`` (-1..1):

* label: MIXED if ``pos >= 0.15`` and ``neg >= 0.15`` (both polarities clearly present);
  else POSITIVE if ``compound >= 0.05``, NEGATIVE if ``compound <= -0.05`` (VADER's own
  thresholds), else NEUTRAL.
* confidence of the label: ``0.5 + 0.5 * strength``, strength being ``|compound|`` for
  POSITIVE/NEGATIVE, ``neu`` for NEUTRAL and ``min(pos, neg) / max(pos, neg)`` (balance)
  for MIXED; so the label always holds the largest score.
* the other three labels share ``1 - confidence`` in proportion to VADER's evidence for
  them (Positive ``pos``, Negative ``neg``, Neutral ``neu``, Mixed ``min(pos, neg)``),
  equally when that evidence is all zero. The four scores sum to 1.
"""

from __future__ import annotations

import json

from .wire import COMPREHEND_JSON, ApiError, Response, validation_exception

TARGET_PREFIX = "Comprehend_20171127."
LANGUAGES = ("en", "es", "fr", "de", "it", "pt", "ar", "hi", "ja", "ko", "zh", "zh-TW")
SCORED_LANGUAGES = frozenset({"en"})
MAX_TEXT_BYTES = 5000
MAX_BATCH_TEXTS = 25
MIXED_MIN_SHARE = 0.15  # VADER pos and neg must both reach this for MIXED
POLAR_MIN_COMPOUND = 0.05  # VADER's documented positive/negative threshold
_KEYS = ("Positive", "Negative", "Neutral", "Mixed")


class SentimentModel:
    """VADER mapped to Comprehend's four labels and scores (rule in the module docstring)."""

    def __init__(self) -> None:
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError as exc:
            raise RuntimeError("the local Comprehend needs vaderSentiment: pip install 'vaderSentiment>=3.3'") from exc
        self._analyzer = SentimentIntensityAnalyzer()

    def __call__(self, text: str) -> tuple[str, dict[str, float]]:
        v = self._analyzer.polarity_scores(text)
        return map_vader(v["pos"], v["neg"], v["neu"], v["compound"])


def map_vader(pos: float, neg: float, neu: float, compound: float) -> tuple[str, dict[str, float]]:
    """(label, {"Positive", "Negative", "Neutral", "Mixed"}) from VADER's four numbers."""
    if pos >= MIXED_MIN_SHARE and neg >= MIXED_MIN_SHARE:
        label, key, strength = "MIXED", "Mixed", min(pos, neg) / max(pos, neg)
    elif compound >= POLAR_MIN_COMPOUND:
        label, key, strength = "POSITIVE", "Positive", abs(compound)
    elif compound <= -POLAR_MIN_COMPOUND:
        label, key, strength = "NEGATIVE", "Negative", abs(compound)
    else:
        label, key, strength = "NEUTRAL", "Neutral", neu
    confidence = 0.5 + 0.5 * min(max(strength, 0.0), 1.0)
    evidence = {"Positive": pos, "Negative": neg, "Neutral": neu, "Mixed": min(pos, neg)}
    others = [k for k in _KEYS if k != key]
    total = sum(evidence[k] for k in others)
    rest = 1.0 - confidence
    scores = {key: confidence}
    for k in others:
        scores[k] = rest * evidence[k] / total if total > 0 else rest / 3.0
    return label, {k: scores[k] for k in _KEYS}


class Comprehend:
    """The two operations, from request JSON to response JSON (or ApiError)."""

    def __init__(self, model=None, unavailable: str | None = None) -> None:
        """*model*: text -> (label, scores), default VADER; *unavailable*: why there is none."""
        self._unavailable = unavailable
        self._model = model if model is not None or unavailable else SentimentModel()

    @classmethod
    def load(cls, log) -> "Comprehend":
        """Comprehend with VADER, or one that explains on every call why VADER is missing."""
        try:
            return cls(SentimentModel())
        except RuntimeError as exc:
            log(f"sqlml serve: Comprehend FAILED to load: {exc}")
            return cls(unavailable=str(exc))

    @property
    def status(self) -> dict:
        if self._unavailable:
            return {"status": "Failed", "error": self._unavailable}
        return {"status": "InService", "model": "vaderSentiment", "languages": sorted(SCORED_LANGUAGES)}

    def handle(self, target: str, content_type: str, body: bytes) -> Response:
        if self._unavailable:
            raise ApiError(500, "InternalServerException", f"the local Comprehend is unavailable: {self._unavailable}")
        op = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else None
        if op not in ("DetectSentiment", "BatchDetectSentiment"):
            raise ApiError(400, "UnknownOperationException",
                           f"Operation {target!r} is not supported by the local Comprehend "
                           f"(supported: {TARGET_PREFIX}DetectSentiment, {TARGET_PREFIX}BatchDetectSentiment)")
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in (COMPREHEND_JSON, "application/json"):
            raise ApiError(400, "SerializationException",
                           f"Content-Type must be {COMPREHEND_JSON}, got {content_type or 'none'!r}")
        try:
            request = json.loads(body) if body.strip() else {}
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "SerializationException", "Request body is not valid JSON") from None
        if not isinstance(request, dict):
            raise ApiError(400, "SerializationException", "Start of structure or map found where not expected.")
        result = self.detect(request) if op == "DetectSentiment" else self.batch_detect(request)
        return Response(200, json.dumps(result).encode("utf-8"), [("Content-Type", COMPREHEND_JSON)])

    def detect(self, request: dict) -> dict:
        text = request.get("Text")
        if text is None:
            raise validation_exception("text", "Member must not be null")
        if not isinstance(text, str):
            raise ApiError(400, "SerializationException", "Text: STRING_VALUE can not be converted to a String")
        if text == "":
            raise validation_exception("text", "Member must have length greater than or equal to 1", "''")
        language = _language(request)
        size = _utf8_size(text)
        if size > MAX_TEXT_BYTES:
            raise ApiError(400, "TextSizeLimitExceededException", _size_message(size))
        _check_scored(language)
        label, scores = self._model(text)
        return {"Sentiment": label, "SentimentScore": scores}

    def batch_detect(self, request: dict) -> dict:
        texts = request.get("TextList")
        if texts is None:
            raise validation_exception("textList", "Member must not be null")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ApiError(400, "SerializationException", "TextList must be a list of strings")
        if not texts:
            raise validation_exception("textList", "Member must have length greater than or equal to 1", "[]")
        if any(t == "" for t in texts):
            raise validation_exception(
                "textList", "Member must satisfy constraint: [Member must have length greater than or equal to 1]",
                "'[...]'")
        language = _language(request)
        if len(texts) > MAX_BATCH_TEXTS:
            raise ApiError(400, "BatchSizeLimitExceededException",
                           f"The number of documents in the request exceeds the limit of {MAX_BATCH_TEXTS}. "
                           f"Received {len(texts)}.")
        _check_scored(language)
        results, errors = [], []
        for index, text in enumerate(texts):
            size = _utf8_size(text)
            if size > MAX_TEXT_BYTES:  # AWS fails only this document, in ErrorList
                errors.append({"Index": index, "ErrorCode": "TEXT_SIZE_LIMIT_EXCEEDED",
                               "ErrorMessage": _size_message(size)})
                continue
            label, scores = self._model(text)
            results.append({"Index": index, "Sentiment": label, "SentimentScore": scores})
        return {"ResultList": results, "ErrorList": errors}


def _language(request: dict) -> str:
    language = request.get("LanguageCode")
    if language is None:
        raise validation_exception("languageCode", "Member must not be null")
    if language not in LANGUAGES:
        # Outside Comprehend's enum: the service's input validation refuses it.
        raise validation_exception("languageCode",
                                   f"Member must satisfy enum value set: [{', '.join(LANGUAGES)}]",
                                   f"'{language}'" if isinstance(language, str) else str(language))
    return language


def _check_scored(language: str) -> None:
    if language not in SCORED_LANGUAGES:
        raise ApiError(400, "UnsupportedLanguageException",
                       f"Amazon Comprehend can not process the language in the input text: {language!r}. "
                       f"The local sentiment model (VADER) supports: {', '.join(sorted(SCORED_LANGUAGES))}")


def _utf8_size(text: str) -> int:
    if len(text) * 4 <= MAX_TEXT_BYTES:
        return len(text)  # cannot be over the limit whatever the characters; skip encoding
    return len(text.encode("utf-8", "surrogatepass"))


def _size_message(size: int) -> str:
    return (f"Input text size exceeds limit. Max length of request text allowed is {MAX_TEXT_BYTES} bytes "
            f"while in this request the text size is {size} bytes")
