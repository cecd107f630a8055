"""SageMaker request/response bodies: every row's answer is found by its position in a
response that accounts for every row, or the whole response is refused."""

import pytest

from sqlml.errors import ServiceError
from sqlml.services.codecs import csv_field, parse_response


def test_csv_fields_are_quoted_per_rfc4180():
    assert csv_field("plain") == "plain"
    assert csv_field('a,b') == '"a,b"'
    assert csv_field('say "hi"') == '"say ""hi"""'
    assert csv_field("two\nlines") == '"two\nlines"'
    assert csv_field(" padded") == '" padded"'


@pytest.mark.parametrize("body, ctype, rows, expected", [
    (b"1.5\n2.5\n", "text/csv", 2, ["1.5", "2.5"]),
    (b"1.5,2.5,3.5", "text/csv", 3, ["1.5", "2.5", "3.5"]),                     # XGBoost: one line
    (b"0.9,label\n", "text/csv", 1, ["0.9"]),                                 # first output per row
    (b'"a,b",x\n"c ""q""",y\n', "text/csv", 2, ["a,b", 'c "q"']),
    (b'{"scores":[{"score":1.25},{"score":0.5}]}', "application/json", 2, [1.25, 0.5]),
    (b'{"predictions":[{"score":0.7,"predicted_label":1}]}', "application/json", 1, [0.7]),
    (b'{"predictions":[{"predicted_label":3}]}', "application/json", 1, [3]),
    (b'[1, 2, 3]', "application/json", 3, [1, 2, 3]),
    (b'4\n5\n', "application/jsonlines", 2, [4, 5]),
    (b'{"score": 1}\n{"score": 2}\n', "application/jsonlines", 2, [1, 2]),
])
def test_response_shapes(body, ctype, rows, expected):
    assert parse_response(body, ctype, rows, "ep") == expected


@pytest.mark.parametrize("body, ctype, rows", [
    (b"1\n2\n", "text/csv", 3),
    (b'{"scores":[{"score":1}]}', "application/json", 2),
    (b"1\n2\n3\n", "text/csv", 2),
    (b"", "text/csv", 1),
])
def test_wrong_count_is_refused_with_both_counts(body, ctype, rows):
    with pytest.raises(ServiceError) as err:
        parse_response(body, ctype, rows, "ep")
    assert f"sent {rows} row" in err.value.sql_message and "endpoint returned" in err.value.sql_message


def test_malformed_json_is_an_error():
    with pytest.raises(ServiceError):
        parse_response(b'{"scores": [', "application/json", 1, "ep")
