"""The SQL-level fuzz's parts: Hypothesis strategies for statements over every sqlml
function, a session that runs them with a bound and classifies what comes back, and
a record of distinct failures, each with the shortest statement that showed it.

tests/test_fuzz.py drives these; it holds no SQL of its own. Two kinds of case:

* Echo cases: one of the typed SageMaker functions (REAL, INT, DECIMAL, STRING) over
  an echo endpoint of tests/doubles/fakeaws, whose answer is the row's first field. The rows
  are generated with NULLs between them and duplicates among them, in one of several
  statement shapes (scalar, derived table, the warm-up idiom, GROUP BY, a merged
  derived table, INSERT ... SELECT, UPDATE). Each row's answer must equal its own
  input (cut or rounded to the declared type): any error, NULL or other value fails.
* Wild cases: any installed function with arguments of any type, value and count,
  as a scalar, over rows, as an aggregate or a window (MariaDB). These may fail,
  but only cleanly: never "internal error", never a timeout (the fake always answers).

Every statement must end within its bound and keep its connection; a KILL (issued by
test_fuzz's killer) may end a statement or a connection, and then must do so within
KILL_BOUND_S.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from decimal import ROUND_HALF_UP, Context, Decimal
from pathlib import Path
from typing import Callable

import pymysql
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent

# ---- bounds --------------------------------------------------------------------------

TIMEOUT_S = 6  # the engine's timeout_s during the fuzz (a row's budget, all attempts)
# The fake's latency for the echo-slow* endpoints (KILL targets): longer than KILL_BOUND_S,
# so an unhonoured KILL shows; under half of TIMEOUT_S, since a coalesced call may wait
# for the request in flight and then for its own.
SLOW_LATENCY_MS = 2000
KILL_BOUND_S = 1.5  # KILL QUERY / KILL CONNECTION must end sqlml work this fast (issue 13: 1 s, plus scheduling)
PER_CALL_S = 0.02  # a row's share of a statement's bound (the fake answers at once)
READ_TIMEOUT_S = 120  # the client gives up here: far past every bound

INTERRUPTED = 1317  # ER_QUERY_INTERRUPTED
WARN_DATA_TRUNCATED = 1265  # ER_WARN_DATA_TRUNCATED
CONNECTION_KILLED = 1927  # MariaDB: ER_CONNECTION_KILLED
LOST = {0, 2006, 2013, 2055, 4031, CONNECTION_KILLED}


def installed_functions() -> dict[str, bool]:
    """Every function sql/install.sql creates: name -> is it an aggregate."""
    text = (ROOT / "sql" / "install.sql").read_text()
    found = re.findall(r"^CREATE (AGGREGATE )?FUNCTION (\w+)", text, re.MULTILINE)
    return {name: bool(agg) for agg, name in found}


# ---- SQL literals ------------------------------------------------------------------


def sql_string(value: str) -> str:
    return "'" + pymysql.converters.escape_string(value) + "'"


def sql_double(value: float) -> str:
    text = repr(value)
    return text if "e" in text else text + "e0"  # an exponent makes it a DOUBLE literal


def sql_decimal(value: Decimal) -> str:
    text = format(value, "f")
    return text if "." in text else text + ".0"  # a point makes it a DECIMAL literal


def derived(rows: list[tuple[int, str]], alias: str = "q") -> str:
    """(k, v) rows as a derived table, in k order: UNION ALL of literals."""
    body = " UNION ALL ".join(f"SELECT {k}{' AS k' if i == 0 else ''}, {v}{' AS v' if i == 0 else ''}"
                              for i, (k, v) in enumerate(rows))
    return f"({body}) {alias}"


# ---- echo cases ----------------------------------------------------------------------

ECHO_TYPES = ("REAL", "INT", "DECIMAL", "STRING")
SHAPES = ("scalar", "derived", "warm", "group", "merged", "insert", "update")
WIDE = Context(prec=200)  # DECIMAL(65,30) and more: no rounding in the expected values
INT_BITS = {"TINYINT": 8, "SMALLINT": 16, "MEDIUMINT": 24, "INT": 32, "INTEGER": 32, "BIGINT": 64}
# Printable text with what CSV must quote (comma, quotes, newlines, CR), spaces at the
# ends, backslashes, and characters of 2, 3 and 4 UTF-8 bytes. NUL is left to the wild cases.
TEXT_ALPHABET = st.sampled_from(list("abcXYZ019 ,\"'\n\r\t\\;|é日😀ß€") + ["a", "b", " ", ","])


@dataclasses.dataclass
class EchoCase:
    """One typed function over an echo endpoint: every row must get its own input back."""

    rtype: str  # REAL INT DECIMAL STRING
    declared: str  # the return type argument, e.g. 'DECIMAL(10,3)'
    values: list  # per row k = 1..n: the SQL literal, or None for NULL
    expected: list  # per row: the expected answer (Python), or None
    column: str  # the SQL type that holds every input exactly (for INSERT/UPDATE)
    result_column: str  # the SQL type that holds every answer
    ok_template: str  # SQL: is {r} the right answer for {v}
    shape: str
    endpoint: str
    batch: int
    extras: list[str]  # further arguments after v (the echo answers the first)
    # A STRING answer longer than its VARCHAR(n): cut with warning 1265, which strict SQL
    # mode turns into the INSERT's or UPDATE's error (docs/sql.md, "Types, NULLs and errors").
    truncated: bool = False

    @property
    def function(self) -> str:
        return f"aws_sagemaker_invoke_endpoint_{self.rtype.lower()}"

    @property
    def slow(self) -> bool:
        return self.endpoint.startswith("echo-slow")

    def call(self, v: str, in_table: bool = True) -> str:
        extras = self.extras if in_table else ["1" if e == "k" else e for e in self.extras]
        args = ", ".join([sql_string(self.endpoint), sql_string(self.declared), str(self.batch), v] + extras)
        return f"{self.function}({args})"

    def warm(self, v: str) -> str:
        args = ", ".join([sql_string(self.endpoint), str(self.batch), v] + self.extras)
        return f"sqlml_warm_sagemaker({args})"

    def ok(self, r: str, v: str) -> str:
        return self.ok_template.format(r=r, v=v)

    def rows(self) -> list[tuple[int, str]]:
        return [(k, "NULL" if v is None else v) for k, v in enumerate(self.values, 1)]

    def calls(self) -> int:
        """Rows x call sites: the answer and its check call the function each, the warm-up once more."""
        per_row = {"scalar": 2, "derived": 2, "warm": 3}.get(self.shape, 1)
        if self.shape == "scalar":
            return min(len(self.values), 2 if self.slow else 5) * 2
        return len(self.values) * per_row


def _int_type(draw) -> tuple[str, int, int]:
    name = draw(st.sampled_from(sorted(INT_BITS)))
    unsigned = draw(st.booleans())
    bits = INT_BITS[name]
    low, high = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return name + (" UNSIGNED" if unsigned else ""), low, min(high, 2**63 - 1)


@st.composite
def echo_cases(draw, kind: str, slow: bool = False) -> EchoCase:
    """An echo case; `slow` allows the slow endpoint (the storm's KILL targets)."""
    rtype = draw(st.sampled_from(ECHO_TYPES))
    n = draw(st.integers(1, 2 if slow else 16))
    null_at = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    if rtype == "INT":
        declared, low, high = _int_type(draw)
        form = draw(st.sampled_from(["int", "decimal", "double"]))
        if form == "double":
            low, high = max(low, -(2**53)), min(high, 2**53)
        pool = draw(st.lists(st.one_of(st.integers(low, high), st.sampled_from([low, high, 0])),
                             min_size=1, max_size=6))
        picks = [draw(st.sampled_from(pool)) for _ in range(n)]
        render = {"int": str, "decimal": lambda i: f"{i}.00", "double": lambda i: sql_double(float(i))}[form]
        values = [render(i) for i in picks]
        expected = picks
        column = {"int": "BIGINT", "decimal": "DECIMAL(22,2)", "double": "DOUBLE"}[form]
        result_column, ok = "BIGINT", "({r}) <=> ({v})"
    elif rtype == "REAL":
        declared = draw(st.sampled_from(["REAL", "DOUBLE", "FLOAT", "DOUBLE PRECISION", "real"]))
        form = draw(st.sampled_from(["double", "int", "decimal"]))
        if form == "double":
            pool = draw(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=6))
            render, column = sql_double, "DOUBLE"
        elif form == "int":
            pool = draw(st.lists(st.integers(-(2**53), 2**53), min_size=1, max_size=6))
            render, column = str, "BIGINT"
        else:
            pool = draw(st.lists(st.decimals(min_value=-10**9, max_value=10**9, places=6, allow_nan=False),
                                 min_size=1, max_size=6))
            render, column = sql_decimal, "DECIMAL(16,6)"
        picks = [draw(st.sampled_from(pool)) for _ in range(n)]
        values = [render(p) for p in picks]
        expected = [float(p) for p in picks]
        result_column, ok = "DOUBLE", "({r}) <=> ({v})"
    elif rtype == "DECIMAL":
        p = draw(st.integers(1, 65))
        s = draw(st.integers(0, min(30, p)))
        declared = draw(st.sampled_from([f"DECIMAL({p},{s})", f"decimal({p}, {s})", f"NUMERIC({p},{s})"]))
        frac = min(s + 2, 30, 65 - (p - s))
        whole = p - s

        def rounded(d: Decimal) -> Decimal:
            return d.quantize(Decimal(1).scaleb(-s), rounding=ROUND_HALF_UP, context=WIDE)

        def fits(d: Decimal) -> bool:
            q = rounded(d)
            return q == 0 or q.adjusted() < whole

        digits = st.integers(-(10 ** min(whole + frac, 40)) + 1, 10 ** min(whole + frac, 40) - 1)
        pool = draw(st.lists(digits.map(lambda i: Decimal(f"{i}E-{frac}")).filter(fits), min_size=1, max_size=6))
        picks = [draw(st.sampled_from(pool)) for _ in range(n)]
        values = [sql_decimal(d) if frac else format(d, "f") for d in picks]
        expected = [rounded(d) for d in picks]
        column = f"DECIMAL({max(whole, 1) + frac},{frac})"
        # The function returns the decimal's exact text (install.sql: RETURNS STRING, see
        # docs/sql.md); read back as the declared type it must be the rounded input.
        result_column, ok = f"DECIMAL({p},{s})", f"CAST(({{r}}) AS DECIMAL({p},{s})) <=> ROUND({{v}}, {s})"
    else:
        length = draw(st.integers(1, 300))
        declared = draw(st.sampled_from([f"VARCHAR({length})", f"varchar( {length} )", f"CHAR({length})"]))
        pool = draw(st.lists(st.text(TEXT_ALPHABET, max_size=draw(st.sampled_from([3, 12, 400]))),
                             min_size=1, max_size=6))
        if draw(st.integers(0, 19)) == 0:  # a field over csv's 128 KB default limit, quoted
            pool.append("a," * 70000)
        picks = [draw(st.sampled_from(pool)) for _ in range(n)]
        values = [sql_string(t) for t in picks]
        expected = [t[:length] for t in picks]
        column = "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        result_column = "LONGBLOB"
        ok = f"CAST(({{r}}) AS BINARY) <=> CAST(LEFT({{v}}, {length}) AS BINARY)"
    truncated = rtype == "STRING" and any(len(t) > length for t, null in zip(picks, null_at, strict=True) if not null)
    values = [None if null else v for v, null in zip(values, null_at, strict=True)]
    expected = [None if null else e for e, null in zip(expected, null_at, strict=True)]
    shape = draw(st.sampled_from(("scalar", "derived", "warm") if slow else SHAPES))
    endpoint = "echo-slow" if slow else draw(st.sampled_from(["echo-fz", "echo-fz-2"]))
    extras = draw(st.lists(st.sampled_from(["k", "7", "'x,y'", "2.5e0", "1.50", "''"]), max_size=2))
    batch = draw(st.sampled_from([1, 2, 7, 25, 10000]))
    return EchoCase(rtype, declared, values, expected, column, result_column, ok, shape, endpoint, batch, extras,
                    truncated)


# ---- wild cases ----------------------------------------------------------------------

# Argument roles per function: what a plausible argument at each position is.
# "*" repeats the last role (features).
ROLES: dict[str, tuple[str, ...]] = {
    "aws_comprehend_detect_sentiment": ("text", "lang", "batch"),
    "aws_comprehend_detect_sentiment_confidence": ("text", "lang", "batch"),
    "aws_sagemaker_invoke_endpoint_real": ("endpoint", "rtype", "batch", "feature*"),
    "aws_sagemaker_invoke_endpoint_int": ("endpoint", "rtype", "batch", "feature*"),
    "aws_sagemaker_invoke_endpoint_decimal": ("endpoint", "rtype", "batch", "feature*"),
    "aws_sagemaker_invoke_endpoint_string": ("endpoint", "rtype", "batch", "feature*"),
    "sqlml_version": (),
    "sqlml_status": (),
    "sqlml_echo_int": ("number",),
    "sqlml_noop_int": ("number",),
    "sqlml_warm_comprehend": ("text", "lang", "batch"),
    "sqlml_warm_sagemaker": ("endpoint", "batch", "feature*"),
    "sqlml_cache_clear": (),
    "sqlml_export_s3": ("uri", "options", "feature*"),
}

ANY = ["NULL", "0", "-1", "1", "42", "9223372036854775807", "-9223372036854775808", "18446744073709551615",
       "1e308", "-0.0e0", "3.5", "1.5e-300", "0.1e0", "123.4560", "-0.000", "99999999999999999999999999.99",
       "''", "'text'", "' 5 '", "'5'", "'REAL'", "'en'", "X'FF'", "X'00'", "'\\0'", "_latin1 X'E9'",
       "DATE '2020-01-01'", "NOW()", "CAST(1 AS UNSIGNED)", "PI()", "'a,\"b\"\\nc'", "REPEAT('a,', 70000)",
       "REPEAT('z', 6000)", "CONVERT('日本' USING utf8mb4)", "'😀'"]
COLUMNS = ["q.n", "q.x", "q.d", "q.s", "q.l", "q.b"]
PLAUSIBLE = {
    "text": ["'great'", "'bad day'", "''", "'so so, meh'", "'#fail#'", "REPEAT('a ', 2600)", "'😀 great'",
             "'x'", "X'FF'", "1", "1.5e0"],
    "lang": ["'en'", "'es'", "'zh-TW'", "'ja'", "'xx'", "'EN'", "''", "1", "1.5e0", "2.50", "NULL"],
    "batch": ["1", "25", "10000", "0", "-1", "'7'", "'abc'", "1.0e0", "2.5", "NULL", "100000000000"],
    "endpoint": ["'echo-w'", "'sum-w'", "'xgb-w'", "'rcf-w'", "'linear-w'", "'jsonl-w'", "'len-w'",
                 "'nope-w'", "''", "'bad name!'", "'" + "e" * 70 + "'", "NULL", "1"],
    "rtype": ["'REAL'", "'DOUBLE'", "'INTEGER'", "'BIGINT UNSIGNED'", "'TINYINT'", "'DECIMAL(10,3)'",
              "'DECIMAL(65,30)'", "'DECIMAL(66,2)'", "'DECIMAL(5,6)'", "'VARCHAR(10)'", "'VARCHAR(0)'",
              "'VARCHAR(16384)'", "'CHAR(3)'", "'INT(300)'", "'REAL UNSIGNED'", "'text'", "''", "NULL", "1",
              "X'FF'"],
    "feature": ["1", "2.5e0", "-3.25", "'abc'", "'a,b'", "NULL", "0", "1e308", "''", "REPEAT('a,', 70000)"],
    "number": ["1", "-1", "9223372036854775807", "2.5e0", "'7'", "NULL"],
    "uri": ["'s3://fuzz-bucket/p'", "'s3://fuzz-bucket/'", "'s3://fuzz-bucket/q/r'", "'s3://nobucket/x'",
            "'http://x/y'", "''", "NULL", "'s3://'"],
    "options": ["'FORMAT CSV HEADER OVERWRITE ON'", "'FORMAT TEXT OVERWRITE ON'", "''", "'OVERWRITE ON'",
                "'FORMAT CSV'", "'garbage'", "NULL", "'FORMAT CSV HEADER MANIFEST ON'"],
}
# The features the wild rows carry: n INT, x DOUBLE, d DECIMAL, s text, l a language code, b bytes.
WILD_ROW = st.tuples(
    st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)).map(lambda v: "NULL" if v is None else str(v)),
    st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)).map(
        lambda v: "NULL" if v is None else sql_double(v)),
    st.one_of(st.none(), st.decimals(min_value=-10**13, max_value=10**13, places=6, allow_nan=False)).map(
        lambda v: "NULL" if v is None else sql_decimal(v)),
    st.one_of(st.none(), st.text(max_size=30)).map(lambda v: "NULL" if v is None else sql_string(v)),
    st.sampled_from(["'en'", "'de'", "'xx'", "NULL", "''", "'zh-TW'"]),
    st.sampled_from(["X'FF'", "X''", "X'616263'", "NULL"]),
)
WILD_SHAPES = ("scalar", "rows", "aggregate", "group", "warm", "window", "insert", "update", "sum")


@dataclasses.dataclass
class WildCase:
    """Any function, any arguments, any shape: it may fail, but only cleanly."""

    function: str
    args: list[str]
    shape: str
    rows: list[tuple[str, ...]]  # the wild rows (n, x, d, s, l, b)
    aggregate: bool

    def table(self, alias: str = "q") -> str:
        body = " UNION ALL ".join(
            f"SELECT {k} AS k, {n} AS n, {x} AS x, {d} AS d, {s} AS s, {lang} AS l, {b} AS b" if k == 1
            else f"SELECT {k}, {n}, {x}, {d}, {s}, {lang}, {b}"
            for k, (n, x, d, s, lang, b) in enumerate(self.rows, 1))
        return f"({body}) {alias}"

    def call(self) -> str:
        return f"{self.function}({', '.join(self.args)})"

    def calls(self) -> int:
        return 1 if self.shape == "scalar" else len(self.rows) * (2 if self.shape == "warm" else 1)


@st.composite
def wild_cases(draw, kind: str, storm: bool = False) -> WildCase:
    functions = installed_functions()
    function = draw(st.sampled_from(sorted(functions)))
    roles = list(ROLES[function])
    if roles and roles[-1].endswith("*"):
        roles[-1] = roles[-1][:-1]
        roles += [roles[-1]] * draw(st.integers(0, 3))
    arity = len(roles)
    if draw(st.integers(0, 9)) == 0:  # a wrong argument count now and then
        arity = max(0, arity + draw(st.sampled_from([-2, -1, 1, 2])))
    shape = draw(st.sampled_from(WILD_SHAPES))
    if shape == "window" and (kind != "mariadb" or not functions[function]):
        shape = "aggregate" if functions[function] else "rows"
    if shape in ("warm",) and functions[function]:
        shape = "aggregate"
    columns = shape != "scalar"
    args = []
    for i in range(arity):
        role = roles[i] if i < len(roles) else "feature"
        pools = [st.sampled_from(PLAUSIBLE[role])] * 3 + [st.sampled_from(ANY)]
        if columns:
            pools.append(st.sampled_from(COLUMNS))
        args.append(draw(st.one_of(*pools)))
    rows = draw(st.lists(WILD_ROW, min_size=1, max_size=40 if shape == "window" else 12))
    return WildCase(function, args, shape, rows, functions[function])


# ---- statements per case -------------------------------------------------------------


@dataclasses.dataclass
class Step:
    sql: str
    calls: int = 0  # sqlml function calls it makes (rows x call sites)
    bound_s: float = 10.0
    check: Callable[[list], str | None] | None = None  # -> what is wrong, or None
    function: str = ""
    allowed_error: tuple[int, str] | None = None  # (code, message regex): a designed answer, not a failure


def _statement_bound(calls: int, slow: bool = False) -> float:
    # A row may take up to timeout_s when its service is slow; nothing here is slow but
    # the slow endpoint, so a statement's bound is two timeouts plus its rows' share.
    per = 2 * SLOW_LATENCY_MS / 1000 + PER_CALL_S if slow else PER_CALL_S
    return 2 * TIMEOUT_S + calls * per


def echo_steps(case: EchoCase, table: str) -> list[Step]:
    """The statements of an echo case; the last ones check the answers."""
    bound = _statement_bound(case.calls(), case.slow)
    n = len(case.values)
    fn = case.function

    def rows_check(rows: list) -> str | None:
        got = [(r[0], r[1], r[2]) for r in rows]  # k, answer, ok
        if len(got) != n:
            return f"{len(got)} rows came back for {n} rows in"
        bad = [(k, ans, case.expected[k - 1]) for k, ans, ok in got if ok != 1]
        if bad:
            k, ans, exp = next((b for b in bad if b[1] is None), bad[0])  # a NULL answer first: the plainest
            what = "a NULL answer" if ans is None else "another answer"
            return (f"{what} for a row's own input ({len(bad)} of {n} rows); e.g. row {k}: "
                    f"input {case.values[k - 1] or 'NULL'} -> {_show(ans)}, expected {_show(exp)}")
        return None

    if case.shape == "scalar":
        literals = ["NULL" if v is None else v for v in case.values[:2 if case.slow else 5]]
        calls = [case.call(v, in_table=False) for v in literals]
        sql = "SELECT " + ", ".join(f"{c}, {case.ok(c, v)}" for c, v in zip(calls, literals, strict=True))

        def scalar_check(rows: list) -> str | None:
            row = rows[0]
            for i, v in enumerate(case.values[:len(calls)]):
                if row[2 * i + 1] != 1:
                    what = "a NULL answer" if row[2 * i] is None else "another answer"
                    return (f"{what} for a row's own input; input {v or 'NULL'} -> {_show(row[2 * i])}, "
                            f"expected {_show(case.expected[i])}")
            return None

        return [Step(sql, case.calls(), _statement_bound(case.calls(), case.slow), scalar_check, fn)]
    source = derived(case.rows())
    if case.shape in ("derived", "warm"):
        where = ""
        if case.shape == "warm":
            where = f" WHERE (SELECT {case.warm('v')} FROM {derived(case.rows(), 'q2')}) >= 0"
        sql = f"SELECT k, {case.call('v')} AS r, {case.ok(case.call('v'), 'v')} AS ok FROM {source}{where} ORDER BY k"
        return [Step(sql, case.calls(), bound, rows_check, fn)]
    if case.shape == "group":
        sql = (f"SELECT k % 3 AS g, COUNT(*), SUM({case.ok(case.call('v'), 'v')}) FROM {source} "
               f"GROUP BY g ORDER BY g")

        def group_check(rows: list) -> str | None:
            if sum(r[1] for r in rows) != n:
                return f"groups hold {sum(r[1] for r in rows)} rows for {n} rows in"
            bad = [r for r in rows if r[2] != r[1]]
            if bad:
                group, count, same = bad[0]
                return f"group k % 3 = {group}: {count - (same or 0)} of {count} rows got another answer"
            return None

        return [Step(sql, case.calls(), bound, group_check, fn)]
    if case.shape == "merged":
        sql = (f"SELECT COUNT(*), SUM({case.ok('d.r', 'd.v')}), SUM(d.r IS NULL), SUM(d.v IS NULL) FROM "
               f"(SELECT v, {case.call('v')} AS r FROM {source}) d")

        def merged_check(rows: list) -> str | None:
            count, ok, r_null, v_null = rows[0]
            if (count, ok, r_null) != (n, n, v_null):
                return (f"over a merged derived table of {n} rows ({v_null} NULL inputs): {ok} rows right, "
                        f"{r_null} NULL answers")
            return None

        return [Step(sql, case.calls(), bound, merged_check, fn)]
    create = [Step(f"DROP TEMPORARY TABLE IF EXISTS {table}"),
              Step(f"CREATE TEMPORARY TABLE {table} (k INT PRIMARY KEY, v {case.column} NULL, "
                   f"r {case.result_column} NULL) ENGINE=InnoDB")]
    verify = Step(f"SELECT k, r, {case.ok('r', 'v')} FROM {table} ORDER BY k", check=rows_check, function=fn)
    cut = (WARN_DATA_TRUNCATED, r"answer cut to") if case.truncated else None
    if case.shape == "insert":
        return create + [Step(f"INSERT INTO {table} (k, v, r) SELECT k, v, {case.call('v')} FROM {source}",
                              n, bound, function=fn, allowed_error=cut), verify]
    values = ", ".join(f"({k}, {v})" for k, v in case.rows())
    return create + [Step(f"INSERT INTO {table} (k, v) VALUES {values}"),
                     Step(f"UPDATE {table} SET r = {case.call('v')}", n, bound, function=fn, allowed_error=cut),
                     verify]


def wild_steps(case: WildCase, table: str) -> list[Step]:
    call = case.call()
    calls = case.calls()
    bound = _statement_bound(calls)
    fn = case.function
    source = case.table()
    if case.shape == "scalar":
        return [Step(f"SELECT {call}", calls, bound, function=fn)]
    if case.aggregate:
        if case.shape == "window":
            return [Step(f"SELECT k, {call} OVER () FROM {source}", calls, bound, function=fn)]
        if case.shape == "group":
            return [Step(f"SELECT k % 2, {call} FROM {source} GROUP BY k % 2", calls, bound, function=fn)]
        if case.shape == "insert":
            return [Step(f"DROP TEMPORARY TABLE IF EXISTS {table}"),
                    Step(f"CREATE TEMPORARY TABLE {table} (r LONGBLOB)"),
                    Step(f"INSERT INTO {table} SELECT {call} FROM {source}", calls, bound, function=fn)]
        return [Step(f"SELECT {call} FROM {source}", calls, bound, function=fn)]
    if case.shape == "warm":
        warm = "sqlml_warm_sagemaker('echo-w', 10000, q2.x)"
        if fn.startswith("aws_comprehend"):
            warm = f"sqlml_warm_comprehend({', '.join(case.args[:2]).replace('q.', 'q2.')})" if len(case.args) >= 2 \
                else "sqlml_warm_comprehend(q2.s, q2.l)"
        elif fn.startswith("aws_sagemaker") and len(case.args) >= 4:
            warm_args = ", ".join([case.args[0], case.args[2]] + case.args[3:]).replace("q.", "q2.")
            warm = f"sqlml_warm_sagemaker({warm_args})"
        return [Step(f"SELECT k, {call} FROM {source} WHERE (SELECT {warm} FROM {case.table('q2')}) >= 0 "
                     f"ORDER BY k", calls, bound, function=fn)]
    if case.shape == "sum":
        return [Step(f"SELECT COUNT({call}), SUM({call} IS NULL) FROM {source}", 2 * calls, bound, function=fn)]
    if case.shape == "insert":
        return [Step(f"DROP TEMPORARY TABLE IF EXISTS {table}"),
                Step(f"CREATE TEMPORARY TABLE {table} (k INT, r LONGBLOB)"),
                Step(f"INSERT INTO {table} SELECT k, {call} FROM {source}", calls, bound, function=fn)]
    if case.shape == "update":
        cols = "k INT PRIMARY KEY, n BIGINT, x DOUBLE, d DECIMAL(20,6), s TEXT, l VARCHAR(8), b BLOB, r LONGBLOB"
        values = ", ".join(f"({k}, {', '.join(row)}, NULL)" for k, row in enumerate(case.rows, 1))
        return [Step(f"DROP TEMPORARY TABLE IF EXISTS {table}"),
                Step(f"CREATE TEMPORARY TABLE {table} ({cols})"),
                Step(f"INSERT IGNORE INTO {table} VALUES {values}"),
                Step(f"UPDATE {table} q SET r = {call}", calls, bound, function=fn)]
    return [Step(f"SELECT k, {call} FROM {source} ORDER BY k", calls, bound, function=fn)]


# ---- failures ----------------------------------------------------------------------


def _template(message: str) -> str:
    """An error message with its values taken out: the same failure on other inputs."""
    text = re.sub(r"'[^']*'", "'…'", message)
    text = re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "N", text)
    return text[:160]


@dataclasses.dataclass
class Failure:
    check: str
    function: str
    what: str
    repro: list[str]
    count: int = 1


class Failures:
    """Distinct failures, each kept with the shortest statements that showed it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.found: dict[tuple, Failure] = {}

    def add(self, check: str, function: str, what: str, repro: list[str], key: str | None = None) -> None:
        sig = (check, function, key if key is not None else _template(what))
        with self.lock:
            old = self.found.get(sig)
            if old is None:
                self.found[sig] = Failure(check, function, what, repro)
                return
            old.count += 1
            if sum(map(len, repro)) < sum(map(len, old.repro)):
                old.what, old.repro = what, repro

    def __bool__(self) -> bool:
        return bool(self.found)

    def report(self) -> str:
        lines = [f"{len(self.found)} distinct failure(s):"]
        for i, f in enumerate(sorted(self.found.values(), key=lambda f: (f.check, f.function)), 1):
            lines.append(f"\n[{i}] {f.check}: {f.function or '-'} ({f.count}x)\n    {f.what}")
            lines += ["    repro: " + (s if len(s) <= 2000 else s[:2000] + " …") for s in f.repro]
        return "\n".join(lines)


# ---- running statements ----------------------------------------------------------


@dataclasses.dataclass
class Stats:
    calls: int = 0
    statements: int = 0
    cases: int = 0
    kill_query: int = 0
    kill_connection: int = 0
    interrupted: int = 0
    reconnects: int = 0
    errors: int = 0
    statement_s: float = 0.0  # time spent in statements, all connections together
    slowest: list = dataclasses.field(default_factory=list)  # [(seconds, statement)], the 5 longest
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def timed(self, seconds: float, sql: str) -> None:
        with self.lock:
            self.statement_s += seconds
            if len(self.slowest) < 5 or seconds > self.slowest[-1][0]:
                self.slowest = sorted(self.slowest + [(round(seconds, 2), sql[:300])], reverse=True)[:5]

    def add(self, **counts) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "lock"}


class Ended(Exception):
    """The case cannot go on: its statement was killed or its connection is gone."""


class Session:
    """One fuzz connection. run() executes a case's steps with their checks; KILLs
    aimed at this connection are announced with killed() before they are sent."""

    def __init__(self, db, name: str, failures: Failures, stats: Stats):
        self.db, self.name, self.failures, self.stats = db, name, failures, stats
        self.lock = threading.Lock()
        self.kills: list[tuple[float, str]] = []
        self.running_since: float | None = None
        self.running_sql = ""
        self.conn = None
        self.conn_id = 0
        self.previous_started = time.monotonic()
        self.connect()

    def connect(self) -> None:
        self.connected_at = time.monotonic()
        self.conn = self.db.connect(read_timeout=READ_TIMEOUT_S, write_timeout=READ_TIMEOUT_S)
        with self.conn.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID()")
            self.conn_id = cur.fetchone()[0]

    def killed(self, how: str) -> tuple[int, float, str]:
        """Registers a KILL about to be sent; returns the connection id, the time and
        the statement running (if any)."""
        with self.lock:
            now = time.monotonic()
            self.kills.append((now, how))
            return self.conn_id, now, self.running_sql

    def _kills_since(self, since: float) -> list[tuple[float, str]]:
        with self.lock:
            return [k for k in self.kills if k[0] >= since]

    def run(self, steps: list[Step], must_succeed: bool) -> None:
        """Runs a case's steps in order until one ends it. must_succeed: an echo case,
        where any error is a failure; else only unclean errors are."""
        self.stats.add(cases=1)
        done: list[str] = []
        try:
            for step in steps:
                self.execute(step, done, must_succeed)
                if not step.sql.startswith("DROP"):
                    done.append(step.sql)
        except Ended:
            pass

    def execute(self, step: Step, repro: list[str], must_succeed: bool = False) -> list | None:
        fn = step.function
        with self.lock:
            self.running_since = started = time.monotonic()
            self.running_sql = step.sql
            # A KILL registered during the previous statement may land after it ended.
            previous_started, self.previous_started = self.previous_started, started
        rows, error = None, None
        try:
            with self.conn.cursor() as cur:
                cur.execute(step.sql)
                rows = [tuple(_plain(v) for v in r) for r in cur.fetchall()]
        except pymysql.err.MySQLError as exc:
            error = exc
        except (OSError, AttributeError) as exc:  # a socket closed under PyMySQL
            error = pymysql.err.OperationalError(2013, f"{type(exc).__name__}: {exc}")
        ended = time.monotonic()
        with self.lock:
            self.running_since = None
            self.running_sql = ""
        self.stats.add(statements=1, calls=step.calls)
        self.stats.timed(ended - started, step.sql)
        kills = self._kills_since(previous_started)
        during = [t for t, _ in kills if started <= t <= ended]
        for t, how in kills:
            if started <= t <= ended and ended - t > KILL_BOUND_S:
                self.failures.add(f"KILL {how} not honoured in time", "",
                                  f"{fn or 'a statement'} ended {ended - t:.1f} s after KILL {how} "
                                  f"(bound {KILL_BOUND_S} s)", repro + [step.sql], key="kill")
        if ended - started > step.bound_s and not (during and during[0] - started <= step.bound_s):
            self.failures.add("statement past its bound", fn,
                              f"took {ended - started:.1f} s, bound {step.bound_s:.1f} s", repro + [step.sql],
                              key="bound")
        if error is None:
            problem = step.check(rows) if step.check else None
            if problem:
                self.failures.add("wrong answer", fn, problem, repro + [step.sql],
                                  key=_template(problem.split(";")[0].split("(")[0]))
            return rows
        self.stats.add(errors=1)
        code = error.args[0] if error.args and isinstance(error.args[0], int) else 0
        message = str(error.args[1]) if len(error.args) > 1 else str(error)
        if "internal error" in message.lower():
            self.failures.add("internal error", fn, message, repro + [step.sql])
        if isinstance(error, pymysql.err.InterfaceError) or code in LOST:
            if not any(how == "CONNECTION" for _, how in self._kills_since(self.connected_at)):
                self.failures.add("connection lost without a KILL", fn, f"{code}: {message}", repro + [step.sql])
            self.stats.add(reconnects=1)
            with self.lock:
                try:
                    self.conn.close()
                except Exception:  # already gone
                    pass
            self.connect()
            raise Ended
        if code == INTERRUPTED:
            self.stats.add(interrupted=1)
            if not kills:
                self.failures.add("interrupted without a KILL", fn, message, repro + [step.sql])
            raise Ended
        if "no answer within timeout_s" in message or "timed out" in message.lower():
            # Nothing in the fuzz is slower than timeout_s: a timeout here is a stuck engine.
            self.failures.add("timeout with a healthy service", fn, message, repro + [step.sql])
        allowed = step.allowed_error
        if must_succeed and not (allowed and code == allowed[0] and re.search(allowed[1], message)):
            self.failures.add("echo call failed", fn, f"{code}: {message}", repro + [step.sql])
        raise Ended

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # killed already
            pass


def _show(value) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _plain(value):
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else value
