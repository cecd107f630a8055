"""Turns Aurora MySQL's SageMaker DDL into SQL a stock server accepts.

Aurora:
    CREATE FUNCTION anomaly_score(value REAL) RETURNS REAL
      ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT ENDPOINT NAME 'random-cut-forest-model-demo';
sqlml (a stored function over the typed UDF, so the name, arguments and return type
are the same and callers do not change):
    CREATE FUNCTION anomaly_score(value REAL) RETURNS REAL
      NOT DETERMINISTIC NO SQL SQL SECURITY DEFINER
      RETURN aws_sagemaker_invoke_endpoint_real('random-cut-forest-model-demo', 'REAL', 10000, value);

The grammar is Aurora's: [DEFINER = user] before FUNCTION or after the parameter list,
[SQL SECURITY {DEFINER|INVOKER}], [NOT] DETERMINISTIC, COMMENT, and [MAX_BATCH_SIZE n].
It is small enough that a tokenizer and a recursive reader say it more plainly than
a general SQL parser would; anything else is refused with the token it stopped at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import types as sqltypes
from .errors import ArgumentError

DEFAULT_MAX_BATCH_SIZE = 10000
_UDF_SUFFIX = {sqltypes.KIND_REAL: "real", sqltypes.KIND_INT: "int", sqltypes.KIND_DECIMAL: "decimal",
               sqltypes.KIND_STRING: "string"}
_TOKEN_RE = re.compile(
    r"""\s+|--[^\n]*|\#[^\n]*|/\*.*?\*/                                       # space and comments
    |(?P<qid>`(?:[^`]|``)*`)
    |(?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
    |(?P<num>\d+(?:\.\d+)?)
    |(?P<word>[A-Za-z_$@][\w$@.]*(?:@[\w.%`'"-]+)?)
    |(?P<punct>[(),=;@.%])""",
    re.VERBOSE | re.DOTALL,
)


class TranslateError(ArgumentError):
    pass


@dataclass
class Param:
    name: str
    sql_type: str


@dataclass
class AuroraFunction:
    name: str
    params: list[Param]
    returns: str
    endpoint: str
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    definer: str | None = None
    security: str = "DEFINER"
    comment: str | None = None
    extra: list[str] = field(default_factory=list)


def _tokens(sql: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(sql):
        m = _TOKEN_RE.match(sql, pos)
        if not m:
            raise TranslateError(f"cannot read the statement at {sql[pos:pos + 20]!r}")
        pos = m.end()
        if m.lastgroup:
            out.append((m.lastgroup, m.group(m.lastgroup)))
    return out


class _Reader:
    def __init__(self, sql: str):
        self.toks = _tokens(sql)
        self.i = 0

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.toks[j][1].upper() if j < len(self.toks) else ""

    def take(self) -> tuple[str, str]:
        if self.i >= len(self.toks):
            raise TranslateError("statement ends too early")
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, *words: str) -> None:
        for w in words:
            kind, text = self.take()
            if text.upper() != w:
                raise TranslateError(f"expected {w} but found {text!r}")

    def accept(self, *words: str) -> bool:
        if all(self.peek(k) == w for k, w in enumerate(words)):
            self.i += len(words)
            return True
        return False

    def identifier(self) -> str:
        kind, text = self.take()
        if kind not in ("qid", "word"):
            raise TranslateError(f"expected a name but found {text!r}")
        return text

    def qualified_name(self) -> str:
        """A function's name, database-qualified or not, in any mix of quoting: f, db.f,
        `db`.`f`, db.`f`, `db`.f (as written: the server reads it as it would)."""
        name = self.identifier()
        while True:
            if self.peek() == ".":  # `db` . `f`: the dot is a token of its own
                self.take()
                name += "." + self.identifier()
            elif name.endswith(".") and self.i < len(self.toks) and self.toks[self.i][0] == "qid":
                name += self.identifier()  # db.`f`: the word took the dot
            else:
                break
        if name.endswith("."):
            raise TranslateError(f"expected a name after {name!r}")
        return name

    def string(self) -> str:
        kind, text = self.take()
        if kind != "str":
            raise TranslateError(f"expected a quoted string but found {text!r}")
        body = text[1:-1]
        return body.replace(text[0] * 2, text[0]).replace("\\" + text[0], text[0])

    def type_text(self, stop: set[str]) -> str:
        """Collects a type such as DECIMAL(10, 2) UNSIGNED or VARCHAR(20) CHARSET utf8mb4."""
        parts, depth = [], 0
        while self.i < len(self.toks):
            word = self.peek()
            if depth == 0 and (word in stop or word in (",", ")")):
                break
            kind, text = self.take()
            depth += text == "("
            depth -= text == ")"
            parts.append(text)
        if not parts:
            raise TranslateError("expected a type")
        text = ""
        for part in parts:
            if text and part not in ("(", ")", ",") and not text.endswith("("):
                text += " "
            text += part
        return text

    def definer(self) -> str:
        self.expect("=")
        parts = []
        while self.peek() and self.peek() not in ("FUNCTION", "RETURNS", "SQL", "ALIAS", "NOT", "DETERMINISTIC"):
            parts.append(self.take()[1])
        if not parts:
            raise TranslateError("DEFINER = needs a user")
        return "".join(parts)


_CLAUSE_STOP = {"RETURNS", "SQL", "ALIAS", "NOT", "DETERMINISTIC", "COMMENT", "DEFINER", "LANGUAGE", "CONTAINS",
                "READS", "MODIFIES", "NO"}


def parse(sql: str) -> AuroraFunction:
    r = _Reader(sql.strip().rstrip(";"))
    r.expect("CREATE")
    definer = r.definer() if r.accept("DEFINER") else None
    r.expect("FUNCTION")
    name = r.qualified_name()
    r.expect("(")
    params: list[Param] = []
    while not r.accept(")"):
        if params:
            r.expect(",")
        pname = r.identifier()
        params.append(Param(pname, r.type_text(set())))
    fn = AuroraFunction(name=name, params=params, returns="", endpoint="", definer=definer)
    while True:
        if r.accept("DEFINER"):
            fn.definer = r.definer()
        elif r.accept("RETURNS"):
            fn.returns = r.type_text(_CLAUSE_STOP)
        elif r.accept("SQL", "SECURITY"):
            security = r.take()[1].upper()
            if security not in ("DEFINER", "INVOKER"):
                raise TranslateError(f"SQL SECURITY must be DEFINER or INVOKER, not {security}")
            fn.security = security
        elif r.accept("NOT", "DETERMINISTIC") or r.accept("NO", "SQL"):
            pass
        elif r.accept("DETERMINISTIC"):
            raise TranslateError("a SageMaker function cannot be DETERMINISTIC: its answers can change")
        elif r.accept("COMMENT"):
            fn.comment = r.string()
        elif r.accept("ALIAS"):
            r.expect("AWS_SAGEMAKER_INVOKE_ENDPOINT", "ENDPOINT", "NAME")
            fn.endpoint = r.string()
            break
        else:
            raise TranslateError(f"unexpected {r.peek() or 'end of statement'} (expected RETURNS, SQL SECURITY, "
                                 f"DEFINER or ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT)")
    if r.accept("MAX_BATCH_SIZE"):
        kind, text = r.take()
        if kind != "num" or not text.isdigit() or int(text) <= 0:
            raise TranslateError(f"MAX_BATCH_SIZE must be an integer > 0, not {text}")
        fn.max_batch_size = int(text)
    if r.i != len(r.toks):
        raise TranslateError(f"unexpected {r.peek()!r} after the endpoint clause")
    if not fn.returns:
        raise TranslateError("RETURNS <type> is missing")
    if not fn.params:
        raise TranslateError("a SageMaker function needs at least one argument: its values form the CSV row")
    return fn


def _is_text(sql_type: str) -> bool:
    return sql_type.split("(")[0].strip().upper() in {"CHAR", "VARCHAR", "TEXT", "TINYTEXT", "MEDIUMTEXT",
                                                     "LONGTEXT"}


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def to_sql(fn: AuroraFunction) -> str:
    """The CREATE FUNCTION statement sqlml runs in place of Aurora's."""
    try:
        rtype = sqltypes.parse(fn.returns, fn.name)
    except ArgumentError as exc:
        raise TranslateError(exc.sql_message) from None
    udf = "aws_sagemaker_invoke_endpoint_" + _UDF_SUFFIX[rtype.kind]
    returns = rtype.sql + (" CHARSET utf8mb4" if rtype.kind == sqltypes.KIND_STRING else "")
    # Text arguments cross as utf8mb4 whatever the parameter's charset.
    args = [f"CONVERT({p.name} USING utf8mb4)" if _is_text(p.sql_type) else p.name for p in fn.params]
    head = "CREATE " + (f"DEFINER = {fn.definer} " if fn.definer else "") + f"FUNCTION {fn.name}("
    head += ", ".join(f"{p.name} {p.sql_type}" for p in fn.params) + f") RETURNS {returns}"
    lines = [head, f"  NOT DETERMINISTIC NO SQL SQL SECURITY {fn.security}"]
    if fn.comment is not None:
        lines.append(f"  COMMENT {_sql_string(fn.comment)}")
    call_args = ", ".join([_sql_string(fn.endpoint), _sql_string(rtype.sql), str(fn.max_batch_size)] + args)
    lines.append(f"  RETURN {udf}({call_args})")
    return "\n".join(lines)


def translate(sql: str) -> str:
    return to_sql(parse(sql))
