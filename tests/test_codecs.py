"""SageMaker request/response bodies: every row's answer is found by its position in a
response that accounts for every row, or the whole response is refused."""

import pytest

from sqlml.errors import ServiceError
from sqlml.services.codecs import csv_field, parse_response


def test_an_empty_field_is_quoted_so_its_line_is_a_record():
    # An empty line is no record: one empty-string row must still be one row.
    assert csv_field("") == '""'
    assert parse_response(b'""\n', "text/csv", 1, "f") == [""]


def test_an_answer_of_blanks_is_one_row_not_empty_json():
    assert parse_response(b" \n", "text/csv", 1, "f") == [" "]
    assert parse_response(b"  \n\t\n", "text/csv; charset=utf-8", 2, "f") == ["  ", "\t"]


def test_a_quoted_field_over_the_csv_modules_default_limit_is_read_whole():
    big = "a," * 70000  # 140,000 characters, over csv's 131,072 default
    assert parse_response(('"' + big + '"\n1\n').encode(), "text/csv", 2, "f") == [big, "1"]


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


def _csv_module_parse(text: str, rows: int) -> list:
    """The reference: what _parse_csv returned before its plain-text fast path."""
    import csv
    import io

    records = [r for r in csv.reader(io.StringIO(text)) if r]
    if len(records) == rows:
        return [r[0] for r in records]
    if len(records) == 1 and len(records[0]) == rows:
        return list(records[0])
    return [r[0] for r in records]


@pytest.mark.parametrize("text, rows", [
    ("1.5\n2.5\n", 2), ("1.5\n\n2.5", 2), ("\n\n1\n", 1), ("", 0), ("", 1), ("1,2,3", 3), ("1,2,3", 1),
    ("1,2,3", 2), ("a,b\nc,d\n", 2), (",\n,x\n", 2), (" 1 , 2 \n", 1), ("1,,2\n", 1), ("x,y\n", 2),
    ("1\n2\n3", 2), ("é,ü\nß\n", 2),
])
def test_unquoted_csv_fast_path_reads_what_the_csv_module_reads(text, rows):
    from sqlml.services.codecs import _parse_csv

    assert _parse_csv(text, rows, "f") == _csv_module_parse(text, rows)


def test_unquoted_csv_fast_path_matches_the_csv_module_on_random_bodies():
    import random

    from sqlml.services.codecs import _parse_csv

    rng = random.Random(11)
    for _ in range(2000):
        text = "".join(rng.choice("ab1.,\n\n ") for _ in range(rng.randrange(0, 30)))
        rows = rng.randrange(0, 6)
        assert _parse_csv(text, rows, "f") == _csv_module_parse(text, rows), (text, rows)


@pytest.mark.parametrize("body, rows, expected", [
    (b'"1,5"\r\n"2"\r\n', 2, ["1,5", "2"]),      # quotes and CRLF: the csv module's path
    (b"1\r\n2\r\n", 2, ["1", "2"]),
    (b'"x\ny",1\n', 1, ["x\ny"]),                 # a newline inside quotes is not a row end
])
def test_quoted_or_crlf_bodies_still_follow_rfc4180(body, rows, expected):
    assert parse_response(body, "text/csv", rows, "ep") == expected


@pytest.mark.parametrize("value, text", [
    (76.0, "76"), (-0.0, "0"), (0.25, "0.25"), (-3.5, "-3.5"), (1e15 - 1, "999999999999999"),
    (1e15, "1000000000000000.0"), (1e16, "1e+16"), (1e-7, "1e-07"),
])
def test_real_arguments_are_written_canonically(value, text):
    from sqlml.engine.functions.sagemaker import _encode_real

    assert _encode_real(value) == text


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_real_arguments_are_refused(value):
    from sqlml.engine.functions.sagemaker import _encode_real
    from sqlml.errors import ArgumentError

    with pytest.raises(ArgumentError, match="only finite numbers"):
        _encode_real(value)


@pytest.mark.parametrize("body", [b"0.75\n", b"0.75", b"-1e-05\n", b"label a\n", b"x \n", b"7\t\n", b"\xc3\xa9\n",
                                  b" 1\n", b"{\"a\": 1}\n", b"[1]\n", b"1,2\n", b"\"q\"\n", b"1\r\n", b"1\n\n",
                                  b"\n", b"", b"1\n2\n"])
def test_a_one_row_csv_answer_reads_the_same_on_the_quick_path(body):
    """parse_response reads a one-row text/csv answer that is one plain field without the
    general path's decoding and splitting: exactly what the general path reads (given the
    same media type spelled with a parameter, which only it takes), or the same error."""
    def read(ctype):
        try:
            return parse_response(body, ctype, 1, "ep")
        except ServiceError as exc:
            return ("error", str(exc))

    assert read("text/csv") == read("text/csv; charset=utf-8")
