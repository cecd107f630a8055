"""Declared return types: an answer that does not fit is an error, never a different value."""

from decimal import Decimal

import pytest

from sqlml import types
from sqlml.errors import ArgumentError, ResultTypeError


@pytest.mark.parametrize("spec, raw, expected", [
    ("INTEGER", "42", 42), ("INT", "3.0", 3), ("BIGINT", 2**62, 2**62), ("TINYINT UNSIGNED", "255", 255),
    ("REAL", "1.5", 1.5), ("DOUBLE", 2, 2.0), ("REAL", "-1e10", -1e10),
    ("DECIMAL(5,2)", "123.456", b"123.46"), ("DECIMAL(5,2)", "-0.005", b"-0.01"), ("DECIMAL(10,0)", 7, b"7"),
    ("VARCHAR(10)", "café 😀", "café 😀".encode()), ("VARCHAR(5)", 1.25, b"1.25"),
    # DECIMAL(p,p) has no whole digits; zero, however written, fits (issue 13, fuzz).
    ("DECIMAL(3,3)", "0", b"0.000"), ("DECIMAL(3,3)", "0E-7", b"0.000"), ("DECIMAL(3,3)", "-0.0004", b"0.000"),
    ("DECIMAL(3,3)", "0.9994", b"0.999"),
])
def test_answers_that_fit(spec, raw, expected):
    assert types.parse(spec, "f").convert(raw, "f") == expected


@pytest.mark.parametrize("spec, raw", [
    ("INTEGER", "3.5"), ("INTEGER", "abc"), ("INT", str(2**31)), ("TINYINT", "-129"), ("INT UNSIGNED", "-1"),
    ("REAL", "nan"), ("REAL", "1e400"), ("REAL", "x"), ("REAL", None), ("REAL", True),
    ("DECIMAL(5,2)", "1234.5"), ("DECIMAL(5,2)", "inf"), ("VARCHAR(3)", {"a": 1}),
    ("DECIMAL(3,3)", "1"), ("DECIMAL(3,3)", "0.9996"),
])
def test_answers_that_do_not_fit_are_errors(spec, raw):
    with pytest.raises(ResultTypeError):
        types.parse(spec, "f").convert(raw, "f")


def test_varchar_is_cut_on_character_boundaries():
    value = types.parse("VARCHAR(6)", "f").convert("café 😀😀", "f")
    assert isinstance(value, types.Truncated)
    assert value.decode("utf-8") == "café 😀"


@pytest.mark.parametrize("spec", ["BLOB", "DECIMAL(70,2)", "VARCHAR", "VARCHAR(0)", "REAL(3)", "DECIMAL(5,6)"])
def test_unsupported_declared_types_are_refused(spec):
    with pytest.raises(ArgumentError):
        types.parse(spec, "f")


def test_decimal_keeps_digits_a_double_would_lose():
    assert types.parse("DECIMAL(30,10)", "f").convert("12345678901234567890.0123456789", "f") == \
        str(Decimal("12345678901234567890.0123456789")).encode()


@pytest.mark.parametrize("raw", ["1.5", " 2.5 ", "-0", "1e-320", "1_000.5", "7", "1.7976931348623157e308",
                                 "0.1", "3.141592653589793238462643383279"])
def test_real_fast_path_gives_the_decimal_paths_number(raw):
    assert types.parse("REAL", "f").convert(raw, "f") == float(Decimal(raw.strip()))


@pytest.mark.parametrize("raw, message", [("nan", "not a finite REAL"), ("-inf", "not a finite REAL"),
                                          ("1e400", "out of range for REAL"), ("abc", "not a REAL"),
                                          ("", "not a REAL")])
def test_real_fast_path_leaves_bad_answers_to_the_exact_message(raw, message):
    with pytest.raises(ResultTypeError) as err:
        types.parse("REAL", "f").convert(raw, "f")
    assert message in err.value.sql_message
