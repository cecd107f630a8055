"""engine/warmup.py AnswerList: a memo lane's answers kept compact, given back exactly."""

from array import array
from itertools import accumulate

import pytest

from sqlml.engine.warmup import AnswerList


@pytest.mark.parametrize("chunks, form", [
    ([[1.5, -0.0], [2.25]], "floats"),
    ([["2.5", "x"], ["", "12"]], "text"),
    ([["ascii"], ["naïve", "日本"], ["z"]], "text"),
    ([["a"], ["b\ud800c"], ["d"]], "objects"),     # a lone surrogate has no UTF-8 form
    ([[1.5], ["text"]], "objects"),                 # kinds mixed across chunks
    ([["a", 1.5]], "objects"),                      # ... or within one
    ([[1, None, ("t",)]], "objects"),
])
def test_answers_come_back_in_order_whatever_their_kinds(chunks, form):
    answers = AnswerList(compact=True)
    for chunk in chunks:
        answers.extend(chunk)
        answers.extend([])
    expected = [a for chunk in chunks for a in chunk]
    assert list(answers) == expected and len(answers) == len(expected)
    got = answers.form()
    if form == "floats":
        assert isinstance(got, array) and list(got) == expected
    elif form == "text":
        text, ends = got
        assert bytes(text) == "".join(expected).encode() and list(ends) == list(
            accumulate(len(a.encode()) for a in expected))
    else:
        assert got == expected


def test_not_compact_keeps_the_objects():
    answers = AnswerList(compact=False)
    answers.extend([1.5, 2.5])
    assert answers.form() == [1.5, 2.5]


def test_take_starts_again_empty():
    answers = AnswerList(compact=True)
    answers.extend(["a", "b"])
    assert list(answers.take()[1]) == [1, 2]
    answers.extend([3.0])
    assert list(answers.form()) == [3.0]
