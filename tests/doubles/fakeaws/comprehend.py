"""Comprehend's JSON 1.1 operations as the fake answers them (DetectSentiment,
BatchDetectSentiment), and how injected faults change an answer."""

from .sentiment import fake_sentiment
from .state import ApiError, ITEM_CODE_EXCEPTION, LANGUAGES, MAX_BATCH, MAX_TEXT_BYTES, _validation

# ---------------------------------------------------------------------------
# Comprehend
# ---------------------------------------------------------------------------


def _text_size_error(size):
    return ApiError(
        400,
        "TextSizeLimitExceededException",
        "Input text size exceeds limit. Max length of request text allowed is %d bytes "
        "while in this request the text size is %d bytes" % (MAX_TEXT_BYTES, size),
    )


def _utf8_len(text):
    if len(text) * 4 <= MAX_TEXT_BYTES:
        return len(text)  # cannot be over the limit; exact size not needed
    return len(text.encode("utf-8"))


def _check_language(req):
    lang = req.get("LanguageCode")
    if lang is None:
        raise _validation("languageCode", "Member must not be null")
    if lang not in LANGUAGES:
        raise ApiError(
            400,
            "UnsupportedLanguageException",
            "Amazon Comprehend can not process the language in the input text: %r. "
            "Supported languages for sentiment: %s" % (lang, ", ".join(sorted(LANGUAGES))),
        )


def _marker_code(text, item_errors):
    for marker, code in item_errors.items():
        if marker and marker in text:
            return marker, code
    return None, None


def comprehend_call(op, req, config):
    """Return the response dict for Comprehend *op*, or raise ApiError."""
    if not isinstance(req, dict):
        raise ApiError(400, "SerializationException", "Start of structure or map found where not expected.")
    item_errors = config.get("item_errors") or {}
    if op == "DetectSentiment":
        text = req.get("Text")
        if text is None:
            raise _validation("text", "Member must not be null")
        if not isinstance(text, str):
            raise ApiError(400, "SerializationException", "STRING_VALUE can not be converted to a String")
        if text == "":
            raise _validation("text", "Member must have length greater than or equal to 1", "''")
        _check_language(req)
        size = _utf8_len(text)
        if size > MAX_TEXT_BYTES:
            raise _text_size_error(size)
        marker, code = _marker_code(text, item_errors)
        if marker:
            exc, status = ITEM_CODE_EXCEPTION.get(code, ("InvalidRequestException", 400))
            raise ApiError(status, exc, "Text contains failure marker %r (%s)" % (marker, code))
        label, scores = fake_sentiment(text)
        return {"Sentiment": label, "SentimentScore": scores}
    if op == "BatchDetectSentiment":
        texts = req.get("TextList")
        if texts is None:
            raise _validation("textList", "Member must not be null")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ApiError(400, "SerializationException", "TextList must be a list of strings")
        if not texts:
            raise _validation("textList", "Member must have length greater than or equal to 1", "[]")
        if any(t == "" for t in texts):
            raise _validation(
                "textList",
                "Member must satisfy constraint: [Member must have length greater than or equal to 1]",
                "'[...]'",
            )
        _check_language(req)
        if len(texts) > MAX_BATCH:
            raise ApiError(
                400,
                "BatchSizeLimitExceededException",
                "The number of documents in the request exceeds the limit of %d. Received %d."
                % (MAX_BATCH, len(texts)),
            )
        per_item = config.get("batch_oversize", "item") == "item"
        results, errors = [], []
        for i, text in enumerate(texts):
            size = _utf8_len(text)
            if size > MAX_TEXT_BYTES:
                if not per_item:
                    raise _text_size_error(size)
                errors.append(
                    {
                        "Index": i,
                        "ErrorCode": "TEXT_SIZE_LIMIT_EXCEEDED",
                        "ErrorMessage": "Input text size exceeds limit. Max length of request text "
                        "allowed is %d bytes while in this request the text size is %d bytes"
                        % (MAX_TEXT_BYTES, size),
                    }
                )
                continue
            marker, code = _marker_code(text, item_errors) if item_errors else (None, None)
            if marker:
                errors.append(
                    {
                        "Index": i,
                        "ErrorCode": code,
                        "ErrorMessage": "Document contains failure marker %r" % (marker,),
                    }
                )
                continue
            label, scores = fake_sentiment(text)
            results.append({"Index": i, "Sentiment": label, "SentimentScore": scores})
        return {"ResultList": results, "ErrorList": errors}
    raise ApiError(400, "UnknownOperationException", "Operation %s is not supported by the fake" % op)


def comprehend_mutate(kind, op, resp, n_texts):
    """Apply a short/extra fault to a successful Comprehend response."""
    if op == "DetectSentiment":
        if kind == "short":
            return {}
        return dict(resp, Extra={"Index": 1})  # an unexpected extra member
    results = resp["ResultList"]
    if kind == "short":
        if results:
            results.pop()
        elif resp["ErrorList"]:
            resp["ErrorList"].pop()
    else:
        label, scores = fake_sentiment("")
        template = dict(results[-1]) if results else {"Sentiment": label, "SentimentScore": scores}
        template["Index"] = n_texts
        results.append(template)
    return resp
