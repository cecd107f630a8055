"""Declared SQL return types and the rules that make a service answer fit one.

Aurora lets a SageMaker function return INTEGER, REAL, DECIMAL or VARCHAR. An answer
that does not fit the declared type is an error (or NULL under the NULL policy),
never a silently different number: 3.5 is not an INTEGER, 1e400 is not a DOUBLE,
123456.7 is not a DECIMAL(5,2). DECIMAL answers with more fractional digits are
rounded half away from zero to the declared scale, as the server itself does on
assignment. VARCHAR(n) answers are cut to n characters (never inside a character),
with a warning. Every string that leaves here is valid UTF-8 (utf8mb4).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

from .errors import ArgumentError, ResultTypeError

from .crossing import KIND_DECIMAL, KIND_INT, KIND_REAL, KIND_STRING  # noqa: F401 - re-exported

_INT_BITS = {"TINYINT": 8, "SMALLINT": 16, "MEDIUMINT": 24, "INT": 32, "INTEGER": 32, "BIGINT": 64}
_REAL_NAMES = {"REAL", "DOUBLE", "DOUBLE PRECISION", "FLOAT"}
_TYPE_RE = re.compile(
    r"^\s*(?P<name>[A-Za-z]+(?:\s+PRECISION)?)\s*(?:\(\s*(?P<a>\d+)\s*(?:,\s*(?P<b>\d+)\s*)?\))?"
    r"(?P<unsigned>\s+UNSIGNED)?(?:\s+(?:CHARACTER\s+SET|CHARSET)\s+\w+)?(?:\s+COLLATE\s+\w+)?\s*$",
    re.IGNORECASE,
)


_WIDE = Context(prec=200)  # DECIMAL(65,30) and then some: rounding never loses digits


class Truncated(bytes):
    """A VARCHAR answer (UTF-8) that was cut to the declared length: the caller warns."""


@dataclass(frozen=True)
class ReturnType:
    sql: str  # canonical text, e.g. 'DECIMAL(10,2)'
    kind: int

    def max_length(self) -> int:
        return 0

    def decimals(self) -> int:
        return 31  # NOT_FIXED_DEC: the server prints doubles as they are

    def convert(self, raw: object, what: str):
        raise NotImplementedError


def _as_decimal(raw: object, what: str, sql: str) -> Decimal:
    if isinstance(raw, bool) or raw is None:
        raise ResultTypeError(f"{what} returned {raw!r}, which is not a {sql}")
    try:
        value = Decimal(raw.strip() if isinstance(raw, str) else repr(raw) if isinstance(raw, float) else raw)
    except (InvalidOperation, TypeError, ValueError):
        raise ResultTypeError(f"{what} returned {_show(raw)}, which is not a {sql}") from None
    if not value.is_finite():
        raise ResultTypeError(f"{what} returned {_show(raw)}, which is not a finite {sql}")
    return value


def _show(raw: object) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class IntType(ReturnType):
    bits: int = 64
    unsigned: bool = False

    def decimals(self) -> int:
        return 0

    def bounds(self) -> tuple[int, int]:
        low, high = (0, 2**self.bits - 1) if self.unsigned else (-(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1)
        # The C side carries a signed 64-bit value, so BIGINT UNSIGNED stops at 2^63-1.
        return low, min(high, 2**63 - 1)

    def convert(self, raw, what):
        value = _as_decimal(raw, what, self.sql)
        if value != value.to_integral_value():
            raise ResultTypeError(f"{what} returned {_show(raw)}, which is not an integer ({self.sql})")
        number = int(value)
        low, high = self.bounds()
        if not low <= number <= high:
            raise ResultTypeError(f"{what} returned {number}, which is out of range for {self.sql} ({low} to {high})")
        return number


@dataclass(frozen=True)
class RealType(ReturnType):
    def convert(self, raw, what):
        if isinstance(raw, float):
            value = raw
        elif type(raw) is str:
            # Fast path for CSV answers: float() of a numeral is the same number as
            # float(Decimal(numeral)); anything else (words, NaN, overflow) takes the
            # Decimal path below for its message.
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                value = float(_as_decimal(raw, what, self.sql))
        else:
            value = float(_as_decimal(raw, what, self.sql))
        if not math.isfinite(value):
            raise ResultTypeError(f"{what} returned {_show(raw)}, which is out of range for {self.sql}")
        return value


@dataclass(frozen=True)
class DecimalType(ReturnType):
    precision: int = 10
    scale: int = 0

    def max_length(self) -> int:
        return self.precision + 2  # sign and decimal point

    def decimals(self) -> int:
        return self.scale

    def convert(self, raw, what):
        value = _as_decimal(raw, what, self.sql)
        # A zero has adjusted() 0 however it is written: it fits even DECIMAL(p,p).
        if value and value.adjusted() >= self.precision - self.scale:
            raise ResultTypeError(f"{what} returned {_show(raw)}, which is out of range for {self.sql}")
        rounded = value.quantize(Decimal(1).scaleb(-self.scale), rounding=ROUND_HALF_UP, context=_WIDE)
        if rounded and rounded.adjusted() >= self.precision - self.scale:  # 999.995 -> 1000.00
            raise ResultTypeError(f"{what} returned {_show(raw)}, which is out of range for {self.sql}")
        if not rounded:
            rounded = rounded.copy_abs()  # -0.0004 rounds to 0.000, not "-0.000"
        return format(rounded, "f").encode("ascii")


@dataclass(frozen=True)
class StringType(ReturnType):
    length: int = 255

    def max_length(self) -> int:
        return self.length * 4  # utf8mb4: at most 4 bytes a character

    def convert(self, raw, what):
        if raw is None or isinstance(raw, (dict, list)):
            raise ResultTypeError(f"{what} returned {_show(raw)}, which is not a {self.sql}")
        if isinstance(raw, bool):
            text = "true" if raw else "false"
        elif isinstance(raw, float):
            text = repr(raw)
        else:
            text = str(raw)
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: not representable in utf8mb4
            raise ResultTypeError(f"{what} returned text that is not valid UTF-8") from None
        if len(text) > self.length:
            return Truncated(text[: self.length].encode("utf-8"))
        return data


def parse(spec: str, function: str) -> ReturnType:
    """Parses a declared type such as 'REAL', 'INT UNSIGNED', 'DECIMAL(10,2)', 'VARCHAR(64)'."""
    m = _TYPE_RE.match(spec or "")
    if not m:
        raise ArgumentError(f"{function}: return type {spec[:16]!r} invalid: "
                            "use INTEGER, REAL, DECIMAL(p,s), VARCHAR(n)")
    name = " ".join(m["name"].upper().split())
    a, b, unsigned = m["a"], m["b"], bool(m["unsigned"])
    if name in _INT_BITS and b is None:
        canonical = name + (" UNSIGNED" if unsigned else "")
        return IntType(canonical, KIND_INT, bits=_INT_BITS[name], unsigned=unsigned)
    if name in _REAL_NAMES and a is None and not unsigned:
        return RealType(name, KIND_REAL)
    if name in ("DECIMAL", "NUMERIC", "DEC", "FIXED") and not unsigned:
        precision = int(a) if a else 10
        scale = int(b) if b else 0
        if not 1 <= precision <= 65 or not 0 <= scale <= min(30, precision):
            raise ArgumentError(
                f"{function}: {spec[:16]!r}: DECIMAL needs precision 1..65, scale 0..min(30, precision)"
            )
        return DecimalType(f"DECIMAL({precision},{scale})", KIND_DECIMAL, precision=precision, scale=scale)
    if name in ("VARCHAR", "CHAR") and a is not None and b is None and not unsigned:
        length = int(a)
        if not 1 <= length <= 16383:
            raise ArgumentError(f"{function}: {spec[:16]!r}: VARCHAR length must be 1..16383 characters")
        return StringType(f"{name}({length})", KIND_STRING, length=length)
    raise ArgumentError(f"{function}: return type {spec[:16]!r} invalid: use INTEGER, REAL, DECIMAL(p,s), VARCHAR(n)")
