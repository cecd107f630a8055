"""Deterministic sentiment "model" used by the fake Amazon Comprehend.

Rule (tests compute expected values with :func:`fake_sentiment`):

* Tokenise: ``re.findall(r"\\w+", text.lower())`` (Unicode word characters;
  "don't" gives "don" and "t").
* ``pos`` = number of tokens in POSITIVE_WORDS, ``neg`` = number in
  NEGATIVE_WORDS (every occurrence counts).
* Label: pos>0 and neg>0 -> MIXED; only pos -> POSITIVE; only neg -> NEGATIVE;
  neither -> NEUTRAL.
* Confidence of the chosen label: POSITIVE/NEGATIVE 0.6, 0.7, 0.8, 0.9 for a
  count of 1, 2, 3, >=4; NEUTRAL 0.6; MIXED 0.55.
* The other three labels share the rest equally: ``(1 - confidence) / 3``
  each. The four scores add up to 1 (within float rounding).

Scores come back as a dict with the Comprehend keys Positive, Negative,
Neutral, Mixed.
"""

import re

POSITIVE_WORDS = frozenset(
    "good great excellent love amazing perfect happy best wonderful fantastic".split()
)
NEGATIVE_WORDS = frozenset(
    "bad terrible awful hate poor worst broken horrible disappointing sad".split()
)

_WORD_RE = re.compile(r"\w+")
_STRENGTH = {1: 0.6, 2: 0.7, 3: 0.8}
_KEY = {"POSITIVE": "Positive", "NEGATIVE": "Negative", "NEUTRAL": "Neutral", "MIXED": "Mixed"}


def _scores(label, confidence):
    other = (1.0 - confidence) / 3.0
    scores = {"Positive": other, "Negative": other, "Neutral": other, "Mixed": other}
    scores[_KEY[label]] = confidence
    return scores


def fake_sentiment(text):
    """Return ``(label, scores)`` for *text* under the fake's rule.

    label is one of POSITIVE, NEGATIVE, NEUTRAL, MIXED; scores is a fresh dict
    {"Positive": float, "Negative": float, "Neutral": float, "Mixed": float}.
    """
    pos = neg = 0
    for word in _WORD_RE.findall(text.lower()):
        if word in POSITIVE_WORDS:
            pos += 1
        elif word in NEGATIVE_WORDS:
            neg += 1
    if pos and neg:
        label, conf = "MIXED", 0.55
    elif pos:
        label, conf = "POSITIVE", _STRENGTH.get(pos, 0.9)
    elif neg:
        label, conf = "NEGATIVE", _STRENGTH.get(neg, 0.9)
    else:
        label, conf = "NEUTRAL", 0.6
    return label, _scores(label, conf)
