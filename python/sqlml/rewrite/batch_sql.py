"""Batch a statement's ML calls: add a warm-up that sends the distinct inputs first.

    SELECT *, anomaly_score(value) score FROM nyc_taxi WHERE anomaly_score(value) > @c
becomes
    SELECT *, anomaly_score(value) score FROM nyc_taxi
     WHERE COALESCE((SELECT sqlml_warm_sagemaker('ep', 10000, CAST(value AS DOUBLE))
                     FROM nyc_taxi), 0) >= 0 AND (anomaly_score(value) > @c)

The server evaluates that uncorrelated subquery once, before it reads a row (it is a
constant): the warm-up aggregate sends ceil(distinct inputs / max_batch_size) requests
into the result cache, then every row's own call finds its own answer by its own input.
Results are therefore the per-row results by construction; the rewrite only changes
how many requests they cost.

The statement is analysed with sqlglot (MySQL dialect) and edited in its original text:
only the WHERE clause gains the warm-up, everything else stays byte for byte. The
warm-up reads the same FROM (joins included) under the WHERE conjuncts that call no ML
function, so it covers every row the statement evaluates. It is left out (None) when
the shape is not one this module fully understands: more than one statement, UNION,
LIMIT (a warm-up would send inputs of rows the statement never reaches), INTO, FOR
UPDATE, ML calls inside subqueries, joins' ON or FROM, or with arguments other than
columns and literals (an expression could raise an error on a row the statement skips),
and statements with '?' placeholders (being prepared).
"""

from __future__ import annotations

import logging
import re
from typing import Callable

import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

from .. import host

COMPREHEND = ("aws_comprehend_detect_sentiment", "aws_comprehend_detect_sentiment_confidence")
SAGEMAKER_PREFIX = "aws_sagemaker_invoke_endpoint_"
_MYSQL = sqlglot.Dialect.get_or_raise("mysql")
# sqlglot logs what it cannot parse; here that only means "leave the statement as written".
logging.getLogger("sqlglot").setLevel(logging.CRITICAL)
_REPLACE = re.compile(r"^(\s*)REPLACE\b", re.IGNORECASE)
_CLAUSE_END = {TokenType.WHERE, TokenType.GROUP_BY, TokenType.HAVING, TokenType.WINDOW, TokenType.ORDER_BY,
               TokenType.LIMIT, TokenType.UNION, TokenType.INTERSECT, TokenType.EXCEPT, TokenType.INTO,
               TokenType.FOR, TokenType.LOCK, TokenType.SEMICOLON, TokenType.QUALIFY}
_UNSUPPORTED_TOP = {TokenType.LIMIT, TokenType.UNION, TokenType.INTERSECT, TokenType.EXCEPT, TokenType.INTO,
                    TokenType.FOR, TokenType.LOCK}
_NUMERIC_CASTS = {"REAL": "DOUBLE", "DOUBLE": "DOUBLE", "FLOAT": "DOUBLE", "INT": "SIGNED", "INTEGER": "SIGNED",
                  "BIGINT": "SIGNED", "SMALLINT": "SIGNED", "TINYINT": "SIGNED", "MEDIUMINT": "SIGNED"}
_TEXT = {"CHAR", "VARCHAR", "TEXT", "TINYTEXT", "MEDIUMTEXT", "LONGTEXT"}
# Longer statements run as written (unbatched): the analysis (sqlglot) grows with the text
# and, in the parse hook, cannot see KILL QUERY. Measured: WHERE a = 1 OR a = 2 OR ...
# (the slowest shape tried) takes about 0.6 s at 32 KiB; a 1,000-row INSERT ... VALUES is 30 KB.
MAX_ANALYSED_CHARS = 32 * 1024


class _Skip(Exception):
    """This statement is left as written."""


def _name(node: exp.Expression) -> str | None:
    return node.name.lower() if isinstance(node, exp.Anonymous) else None


def _schema(node: exp.Expression) -> str | None:
    """The schema a call is qualified with (s.f(...)), or None."""
    parent = node.parent
    if isinstance(parent, exp.Dot) and parent.expression is node:
        return parent.this.name
    return None


class Names:
    """How this statement's calls resolve: the registry of Aurora-DDL functions, keyed by
    (schema, name), and the session's current database for unqualified calls."""

    def __init__(self, functions: dict, db: str | None):
        self.functions = functions
        self.db = db

    def registered(self, node: exp.Expression):
        """The registry entry `node` calls, resolved as the server resolves it, or None."""
        name = _name(node)
        if not name:
            return None
        schema = _schema(node)
        if schema is None:
            # Unqualified: the current database's function, unless the name is a native
            # function's (then the call is the server's own, as in MySQL).
            if not self.db or (self.db, name) not in self.functions or host.is_native_function(name):
                return None
            schema = self.db
        return self.functions.get((schema, name))

    def service(self, node: exp.Expression) -> str | None:
        """'comprehend' or 'sagemaker' for a call this module batches, else None."""
        name = _name(node)
        if not name:
            return None
        if _schema(node) is None and name in COMPREHEND:
            return "comprehend"
        if (_schema(node) is None and name.startswith(SAGEMAKER_PREFIX)) or self.registered(node) is not None:
            return "sagemaker"
        return None


def _is_ml(node: exp.Expression, names: Names) -> bool:
    return names.service(node) is not None


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def definition_guard(fn) -> str:
    """A condition true only while fn's stored function is exactly the one the registry
    recorded (same schema, name and routine body, hence the same endpoint), checked when
    the statement runs and as its caller. A caller who cannot see the definition gets
    false: no warm-up, the rows' own calls run as written."""
    schema, name = _sql_string(fn.schema), _sql_string(fn.name)
    return (f"EXISTS (SELECT 1 FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {schema} "
            f"AND ROUTINE_NAME = {name} AND ROUTINE_TYPE = 'FUNCTION' "
            f"AND CAST(ROUTINE_SCHEMA AS BINARY) = CAST({schema} AS BINARY) "
            f"AND CAST(ROUTINE_DEFINITION AS BINARY) = CAST({_sql_string(fn.body)} AS BINARY))")


def _arg_sql(node: exp.Expression) -> str:
    if isinstance(node, (exp.Column, exp.Literal)) and not isinstance(node.this, exp.Star):
        return node.sql(dialect="mysql")
    raise _Skip(f"argument {node.sql(dialect='mysql')} is not a column or a literal")


def _literal(node: exp.Expression) -> exp.Literal:
    if not isinstance(node, exp.Literal):
        raise _Skip("a constant argument is not a literal")
    return node


def _cast(arg: str, sql_type: str) -> str:
    base = sql_type.split("(")[0].strip().upper().replace(" UNSIGNED", "")
    if base in _NUMERIC_CASTS:
        return f"CAST({arg} AS {_NUMERIC_CASTS[base]})"
    if base in ("DECIMAL", "NUMERIC", "DEC"):
        return f"CAST({arg} AS {sql_type.strip()})"
    if base in _TEXT:
        return f"CONVERT({arg} USING utf8mb4)"
    return arg


def _warm_call(call: exp.Anonymous, names: Names) -> str:
    """The warm-up aggregate call that fills the cache for `call`'s inputs."""
    name = _name(call)
    args = call.expressions
    fn = names.registered(call)
    if fn is None and name in COMPREHEND:
        if len(args) not in (2, 3):
            raise _Skip("Comprehend call with an unexpected argument count")
        parts = [_arg_sql(args[0]), _arg_sql(args[1])]
        parts += [_literal(args[2]).sql(dialect="mysql")] if len(args) == 3 else []
        return f"sqlml_warm_comprehend({', '.join(parts)})"
    if fn is None:
        if len(args) < 4:
            raise _Skip("SageMaker call with too few arguments")
        endpoint, mbs = _literal(args[0]), _literal(args[2])
        parts = [endpoint.sql(dialect="mysql"), mbs.sql(dialect="mysql")] + [_arg_sql(a) for a in args[3:]]
        return f"sqlml_warm_sagemaker({', '.join(parts)})"
    if len(args) != len(fn.param_types):
        raise _Skip(f"{name} called with {len(args)} arguments, declared with {len(fn.param_types)}")
    parts = [_sql_string(fn.endpoint), str(fn.max_batch_size)] + [_cast(_arg_sql(a), t)
                                                                   for a, t in zip(args, fn.param_types, strict=True)]
    return f"sqlml_warm_sagemaker({', '.join(parts)})"


def _top_select(tree: exp.Expression) -> tuple[exp.Select, str]:
    if isinstance(tree, exp.Select):
        return tree, "select"
    if isinstance(tree, exp.Insert) and isinstance(tree.expression, exp.Select):
        return tree.expression, "insert"
    if isinstance(tree, exp.Update):
        return tree, "update"
    if isinstance(tree, exp.Set) and len(tree.expressions) == 1:
        # SET @v = (SELECT ...): the seed's cutoff. Batch the subquery.
        sub = tree.expressions[0].find(exp.Subquery)
        if sub is not None and isinstance(sub.this, exp.Select):
            return sub.this, "set"
    raise _Skip("not a SELECT, INSERT ... SELECT, UPDATE or SET @v = (SELECT ...)")


def _owner(node: exp.Expression, top: exp.Expression) -> exp.Expression | None:
    """The query node an ML call belongs to, and where in it."""
    child, parent = node, node.parent
    while parent is not None and parent is not top:
        if isinstance(parent, (exp.Select, exp.Subquery, exp.Union, exp.From, exp.Join)):
            return None
        child, parent = parent, parent.parent
    if parent is None:
        return None
    return child


def _spans(tokens, kind: str) -> tuple[int | None, int, int | None, int | None]:
    """(from_start, from_end, where_start, where_end) in the statement `tokens` came from,
    for its top-level query (the SELECT of INSERT ... SELECT; the table of UPDATE)."""
    depth = 0
    start_kw = TokenType.UPDATE if kind == "update" else TokenType.SELECT
    i, n = 0, len(tokens)
    # The query's first keyword: at the top level, or (SET @v = (SELECT ...)) the first SELECT.
    while i < n and not (tokens[i].token_type == start_kw and (depth == 0 or kind == "set")):
        depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(tokens[i].token_type, 0)
        i += 1
    if i == n:
        raise _Skip("no top-level query found")
    from_start = from_end = where_start = where_end = None
    depth = 0
    query_end = None
    for j in range(i + 1, n):
        t = tokens[j]
        if t.token_type == TokenType.L_PAREN:
            depth += 1
        elif t.token_type == TokenType.R_PAREN:
            depth -= 1
            if depth < 0:  # the parenthesis that closes a subquery query
                query_end = t.start
                break
        if depth != 0:
            continue
        tt = t.token_type
        if tt in _UNSUPPORTED_TOP:
            raise _Skip(f"top-level {t.text}")
        if tt == TokenType.ON and j + 1 < n and tokens[j + 1].text.upper() == "DUPLICATE":
            tt = TokenType.SEMICOLON  # INSERT ... SELECT ... ON DUPLICATE KEY UPDATE ends the SELECT
        if kind == "update" and tt == TokenType.SET and from_start is None:
            from_start, from_end = tokens[i].end + 1, t.start
            continue
        if kind != "update" and tt == TokenType.FROM and from_start is None:
            from_start = t.end + 1
            continue
        if from_start is not None and from_end is None and tt in _CLAUSE_END:
            from_end = t.start
        if tt == TokenType.WHERE and where_start is None:
            where_start = t.end + 1
            continue
        if where_start is not None and where_end is None and tt in _CLAUSE_END:
            where_end = t.start
        if tt == TokenType.SEMICOLON:
            break
    if from_start is None:
        raise _Skip("no FROM")
    last = query_end if query_end is not None else _end_of_statement(tokens)
    if from_end is None:
        from_end = last if where_start is None else where_start - len("WHERE")
    if where_start is not None and where_end is None:
        where_end = last
    return from_start, from_end, where_start, where_end


def _end_of_statement(tokens) -> int:
    """Just after the last token (a trailing comment or ';' stays after it)."""
    for t in reversed(tokens):
        if t.token_type != TokenType.SEMICOLON:
            return t.end + 1
    return 0


def rewrite(text: str, prepared: bool, functions: dict, db: str | None = None,
            may_warm: Callable[[str], bool] = lambda service: True, engine=None) -> str | None:
    """The statement with warm-ups, or None to run it as written. functions: the registry
    ((schema, name) -> MlFunction); db: the current database; may_warm(service): whether
    the caller may run that service's warm-up (else the statement runs as written)."""
    if len(text) > MAX_ANALYSED_CHARS:
        return None
    try:
        return _rewrite(text, prepared, Names(functions, db), may_warm, engine)
    except (_Skip, sqlglot.errors.SqlglotError, RecursionError):
        return None


def _rewrite(text: str, prepared: bool, names: Names, may_warm: Callable[[str], bool], engine) -> str | None:
    # REPLACE is INSERT's syntax with another verb, which sqlglot does not parse: read it
    # as INSERT (same length, so every position still points into the original text).
    m = _REPLACE.match(text)
    analysed = text[:m.end(1)] + "INSERT " + text[m.end():] if m else text
    trees = sqlglot.parse(analysed, read="mysql")
    if len(trees) != 1 or trees[0] is None:
        raise _Skip("not exactly one statement")
    tree = trees[0]
    if isinstance(tree, exp.Insert) and isinstance(tree.expression, exp.Values):
        return _warm_values(text, tree, names, may_warm, engine)
    query, kind = _top_select(tree)
    calls = [node for node in tree.find_all(exp.Anonymous) if _is_ml(node, names)]
    if not calls:
        return None
    if not all(may_warm(names.service(c)) for c in calls):
        raise _Skip("the caller may not run a warm-up")
    if kind == "update" and (query.args.get("joins") or query.args.get("from_") or query.args.get("from")):
        raise _Skip("multi-table UPDATE")
    for call in calls:
        place = _owner(call, query)
        if place is None:
            raise _Skip("an ML call inside a subquery, a join or FROM")
        if kind == "insert" and call.find_ancestor(exp.Select) is not query:
            raise _Skip("an ML call outside the INSERT's SELECT")
    warm_calls = list(dict.fromkeys(_warm_call(c, names) for c in calls))
    # Each registry function's warm-up runs only while its definition is still the one
    # recorded: a stale or foreign entry can never choose where a row is sent.
    guards = list(dict.fromkeys(definition_guard(fn) for fn in map(names.registered, calls) if fn is not None))
    if tree.find(exp.Placeholder) is not None:
        # A statement being prepared (the client's COM_STMT_PREPARE or SQL PREPARE, which
        # the server does not always flag): copying a '?' would change the parameter count.
        raise _Skip("placeholders would be copied into the warm-up")
    tokens = _MYSQL.tokenize(analysed)
    from_start, from_end, where_start, where_end = _spans(tokens, kind)
    from_text = text[from_start:from_end].strip()
    # The WHERE's top-level conjuncts, as written. Those without ML calls that cannot
    # fail on any row filter the warm-up, and go first in the statement's own WHERE (AND
    # is commutative; the server evaluates left to right), so ML calls are made only for
    # the rows the warm-up covered.
    plain, ml = [], []
    if where_start is not None:
        for conjunct in _conjuncts(analysed, tokens, where_start, where_end):
            node = _parse_condition(conjunct)
            if any(_is_ml(n, names) for n in node.find_all(exp.Anonymous)):
                ml.append(conjunct)
            else:
                plain.append((conjunct, _cannot_fail(node)))
    safe = [c for c, ok in plain if ok]
    warm_where = " AND ".join(guards + [f"({c})" for c in safe])
    reorder = len(safe) == len(plain) and bool(ml) and bool(plain)
    total = " + ".join(f"COALESCE({w}, 0)" for w in warm_calls)
    if kind == "update":
        # MySQL refuses a subquery on the table being updated (error 1093) unless it is
        # materialized: a derived table with a LIMIT is never merged.
        columns = sorted({col.sql(dialect="mysql") for c in calls for col in c.find_all(exp.Column)})
        if not columns:
            raise _Skip("UPDATE with constant ML arguments")
        inner = f"SELECT * FROM {from_text}" + (f" WHERE {warm_where}" if warm_where else "")
        inner += " LIMIT 18446744073709551615"
        table_alias = _update_alias(query)
        warm = f"(SELECT {total} FROM ({inner}) AS {table_alias})"
    else:
        warm = f"(SELECT {total} FROM {from_text}" + (f" WHERE {warm_where}" if warm_where else "") + ")"
    predicate = f"COALESCE({warm}, 0) >= 0"
    if where_start is None:
        # After FROM (SELECT), or at the end (UPDATE: after SET; ORDER BY/LIMIT are refused).
        at = _end_of_statement(tokens) if kind == "update" else from_end
        return text[:at].rstrip() + f" WHERE {predicate} " + text[at:].lstrip()
    condition = (" AND ".join(f"({c})" for c, _ in plain) + " AND " + " AND ".join(f"({c})" for c in ml)
                 if reorder else f"({text[where_start:where_end].strip()})")
    return text[:where_start] + f" {predicate} AND {condition} " + text[where_end:].lstrip()


def _conjuncts(text: str, tokens, start: int, end: int) -> list[str]:
    """The top-level AND operands of text[start:end] (a WHERE condition), as written;
    `tokens` are text's."""
    parts, depth, between, cut = [], 0, False, start
    for t in tokens:
        if t.start < start or t.end >= end:
            continue
        if t.token_type == TokenType.L_PAREN:
            depth += 1
        elif t.token_type == TokenType.R_PAREN:
            depth -= 1
        elif depth == 0 and t.token_type == TokenType.BETWEEN:
            between = True
        elif depth == 0 and t.token_type in (TokenType.AND, TokenType.DAMP):
            if between:
                between = False  # BETWEEN x AND y
                continue
            parts.append(text[cut:t.start].strip())
            cut = t.end + 1
    parts.append(text[cut:end].strip())
    if any(not p for p in parts):
        raise _Skip("a WHERE condition this module cannot split")
    return parts


def _parse_condition(condition: str) -> exp.Expression:
    tree = sqlglot.parse_one(f"SELECT 1 FROM t WHERE {condition}", read="mysql")
    where = tree.args.get("where") if isinstance(tree, exp.Select) else None
    if where is None:
        raise _Skip("a WHERE condition this module cannot read")
    return where.this


_CANNOT_FAIL = (exp.Column, exp.Literal, exp.Null, exp.Boolean, exp.Identifier, exp.Paren, exp.Not, exp.And, exp.Or,
                exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.Between, exp.In, exp.Is,
                exp.Like, exp.Neg, exp.Parameter, exp.Var, exp.SessionParameter, exp.Tuple, exp.Star)


def _cannot_fail(node: exp.Expression) -> bool:
    """Comparisons of columns, literals and variables: evaluating them on any row raises no
    error and no warning (no arithmetic, casts, functions or subqueries)."""
    return all(isinstance(n, _CANNOT_FAIL) for n in node.walk())


def _update_alias(update: exp.Update) -> str:
    table = update.this
    if not isinstance(table, exp.Table):
        raise _Skip("UPDATE of something other than one table")
    alias = table.alias
    if alias:
        return f"`{alias}`"
    return f"`{table.name}`"


# ---- INSERT/REPLACE ... VALUES: the inputs are literals, known now ---------------------------


def _literal_value(node: exp.Expression, sql_type: str | None):
    """(server argument type, value) of a literal as a UDF would receive it."""
    from ..types import KIND_DECIMAL, KIND_INT, KIND_REAL, KIND_STRING

    if isinstance(node, exp.Null):
        return KIND_STRING, None
    if not isinstance(node, exp.Literal):
        raise _Skip("a VALUES argument is not a literal")
    if node.is_string:
        return KIND_STRING, node.this.encode("utf-8")
    base = (sql_type or "").split("(")[0].strip().upper().replace(" UNSIGNED", "")
    if _NUMERIC_CASTS.get(base) == "DOUBLE":
        return KIND_REAL, float(node.this)
    if _NUMERIC_CASTS.get(base) == "SIGNED" or (not base and re.fullmatch(r"-?\d+", node.this)):
        return KIND_INT, int(float(node.this))
    return KIND_DECIMAL, node.this.encode()


def _warm_values(text: str, tree: exp.Insert, names: Names, may_warm: Callable[[str], bool], engine) -> str | None:
    """Sends the distinct literal inputs of the VALUES rows' ML calls in batches now,
    through the warm-up functions (with their access checks), and marks the statement.
    The statement itself is unchanged: each row's call then reads its cached answer.

    Registry functions are the exception: where their rows go must be checked against
    the function's definition when the statement runs (definition_guard), so their
    warm-up is SQL inside the statement (_guarded_values_warm_up), not a send from here."""
    from ..engine import functions as sqlfunctions
    from ..types import KIND_INT, KIND_STRING

    calls = [node for node in tree.expression.find_all(exp.Anonymous) if _is_ml(node, names)]
    if len(calls) < 2:
        return None
    if not all(may_warm(names.service(c)) for c in calls):
        return None
    groups: dict[tuple, list[tuple]] = {}
    registered: dict[tuple, list[exp.Anonymous]] = {}
    for call in calls:
        name, args = _name(call), call.expressions
        fn = names.registered(call)
        if fn is not None:
            if len(args) != len(fn.param_types):
                raise _Skip(f"{name} called with {len(args)} arguments")
            registered.setdefault(fn.key, []).append(call)
            continue
        if name in COMPREHEND:
            if len(args) not in (2, 3):
                raise _Skip("Comprehend call with an unexpected argument count")
            mbs = [_literal_value(args[2], "INT")] if len(args) == 3 else []
            key = ("sqlml_warm_comprehend", tuple(mbs))
            row = [_literal_value(args[0], None), _literal_value(args[1], None)] + mbs
        else:
            if len(args) < 4:
                raise _Skip("SageMaker call with too few arguments")
            endpoint, mbs = _literal_value(args[0], None), _literal_value(args[2], "INT")
            if endpoint[0] != KIND_STRING:
                raise _Skip("SageMaker endpoint is not a string")
            key = ("sqlml_warm_sagemaker", (endpoint, mbs))
            row = [endpoint, mbs] + [_literal_value(a, None) for a in args[3:]]
        groups.setdefault((key[0], key[1], tuple(t for t, _ in row)), []).append(tuple(v for _, v in row))
    edits = [_guarded_values_warm_up(text, names.functions[key], found, names) for key, found in registered.items()]
    if groups and engine is None:
        raise _Skip("no engine to send the VALUES rows' inputs with (outside the server)")
    warmed = 0
    for (fname, _consts, types), rows in groups.items():
        consts = tuple(rows[0][i] if fname == "sqlml_warm_sagemaker" and i < 2 else None for i in range(len(types)))
        if fname == "sqlml_warm_comprehend":
            consts = (None, rows[0][1]) + ((rows[0][2],) if len(types) == 3 else ())
        try:
            call = sqlfunctions.prepare(engine, fname, KIND_INT, types, consts).call
            call.clear()
            for row in rows:
                call.add(*row)
            warmed += call() or 0
        except Exception:  # noqa: BLE001 - the rows' own calls raise the real error, per row
            continue
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return f"/* sqlml: {warmed} inputs of {len(calls)} calls sent in batches */ {text}"


def _guarded_values_warm_up(text: str, fn, calls: list, names: Names) -> tuple[int, int, str]:
    """An edit of `text` (start, end, replacement) that puts a guarded warm-up of fn's
    distinct VALUES inputs into the first call's first argument, a literal L, as
    IF(COALESCE((warm-up), 0) >= 0, L, L): the same value and type, and the server runs
    the warm-up once (an uncorrelated subquery) before that first row's call."""
    if not all(isinstance(a, (exp.Literal, exp.Null)) for call in calls for a in call.expressions):
        raise _Skip("a VALUES argument is not a literal")
    rows = list(dict.fromkeys(tuple(a.sql(dialect="mysql") for a in call.expressions) for call in calls))
    columns = [f"c{i}" for i in range(len(fn.param_types))]
    warm_args = [_cast(c, t) for c, t in zip(columns, fn.param_types, strict=True)]
    warm = (f"SELECT sqlml_warm_sagemaker({_sql_string(fn.endpoint)}, {fn.max_batch_size}, {', '.join(warm_args)}) "
            f"FROM (VALUES {', '.join('ROW(' + ', '.join(r) + ')' for r in rows)}) AS sqlml_values "
            f"({', '.join(columns)}) WHERE {definition_guard(fn)}")
    start, end = _first_argument_span(text, fn, names)
    literal = text[start:end]
    return start, end, f"IF(COALESCE(({warm}), 0) >= 0, {literal}, {literal})"


def _first_argument_span(text: str, fn, names: Names) -> tuple[int, int]:
    """Where the first argument of the first call of fn is written: one literal token."""
    tokens = _MYSQL.tokenize(text)
    literal_types = {TokenType.NUMBER, TokenType.STRING, TokenType.NULL}
    for i, t in enumerate(tokens[:-2]):
        if t.text.lower() != fn.name or tokens[i + 1].token_type != TokenType.L_PAREN:
            continue
        qualified = i >= 2 and tokens[i - 1].token_type == TokenType.DOT
        if not qualified and host.is_native_function(fn.name):
            continue  # the server's own function of that name, not fn
        schema = tokens[i - 2].text if qualified else names.db
        if schema != fn.schema:
            continue
        arg, after = tokens[i + 2], tokens[i + 3] if i + 3 < len(tokens) else None
        if arg.token_type not in literal_types or after is None or after.token_type not in (TokenType.COMMA,
                                                                                             TokenType.R_PAREN):
            raise _Skip("the first argument is not one literal token")
        start, end = arg.start, arg.end + 1  # a STRING token's span includes its quotes
        if arg.token_type == TokenType.STRING and text[start] not in "'\"":
            raise _Skip("a string literal with an introducer or a prefix")
        return start, end
    raise _Skip(f"the first call of {fn.schema}.{fn.name} was not found")
