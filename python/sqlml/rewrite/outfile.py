"""Aurora's `SELECT ... INTO OUTFILE S3 'uri' [FORMAT {CSV|TEXT} [HEADER]] [OVERWRITE {ON|OFF}]`.

    SELECT id, review AS text FROM reviews WHERE stars > 3 INTO OUTFILE S3 's3://b/p' FORMAT CSV HEADER
becomes
    SELECT sqlml_export_s3('s3://b/p', 'FORMAT CSV HEADER', sqlml_rows.`id` AS `id`, sqlml_rows.`text` AS `text`)
    FROM (SELECT id, review AS text FROM reviews WHERE stars > 3) AS sqlml_rows

The query itself runs unchanged as a derived table (so its GROUP BY, DISTINCT, ORDER BY
and LIMIT keep their meaning) and the export aggregate reads its rows; the header holds
the select list's names or aliases, as Aurora writes them. What Aurora accepts but sqlml
does not (MANIFEST, FIELDS/LINES TERMINATED BY, SELECT *, an unnamed expression) is
refused with a message saying so.
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

_MYSQL = sqlglot.Dialect.get_or_raise("mysql")
_OPTION = re.compile(r"\s*(FORMAT\s+(CSV|TEXT)(\s+HEADER)?|OVERWRITE\s+(ON|OFF))", re.IGNORECASE)


class Unsupported(Exception):
    """Aurora syntax sqlml does not run: the message says what."""


def _into_s3(tokens) -> tuple[int, int, str] | None:
    """(start of INTO, end of the URI string, uri) for a top-level INTO OUTFILE S3 'uri'."""
    depth = 0
    for i, t in enumerate(tokens):
        depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(t.token_type, 0)
        if depth or t.token_type != TokenType.INTO or i + 3 >= len(tokens):
            continue
        a, b, c = tokens[i + 1], tokens[i + 2], tokens[i + 3]
        if a.text.upper() == "OUTFILE" and b.text.upper() == "S3" and c.token_type == TokenType.STRING:
            return t.start, c.end + 1, c.text
    return None


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def rewrite(text: str) -> str | None:
    tokens = _MYSQL.tokenize(text)
    found = _into_s3(tokens)
    if found is None:
        return None
    into_start, uri_end, uri = found
    tail = text[uri_end:].strip().rstrip(";").strip()
    options = []
    while tail:
        m = _OPTION.match(tail)
        if not m:
            raise Unsupported(f"INTO OUTFILE S3 option not supported: {tail[:40]!r} "
                              f"(sqlml supports FORMAT CSV|TEXT [HEADER] and OVERWRITE ON|OFF)")
        options.append(" ".join(m.group(1).upper().split()))
        tail = tail[m.end():].strip()
    query = text[:into_start].rstrip()
    try:
        tree = sqlglot.parse_one(query, read="mysql")
    except sqlglot.errors.SqlglotError:
        return None  # the server's own parser will say what is wrong with the query
    if not isinstance(tree, exp.Select):
        raise Unsupported("INTO OUTFILE S3 needs a single SELECT")
    names = []
    for e in tree.expressions:
        if isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star)):
            raise Unsupported("INTO OUTFILE S3 with SELECT *: list the columns")
        name = e.alias_or_name
        if not name or not (isinstance(e, (exp.Alias, exp.Column))):
            raise Unsupported(f"INTO OUTFILE S3: name the expression {e.sql(dialect='mysql')[:40]} with AS")
        names.append(name)
    if len(set(n.lower() for n in names)) != len(names):
        raise Unsupported("INTO OUTFILE S3: two columns have the same name; use AS")
    columns = ", ".join(f"sqlml_rows.`{n.replace('`', '``')}` AS `{n.replace('`', '``')}`" for n in names)
    return (f"SELECT sqlml_export_s3({_quote(uri)}, {_quote(' '.join(options))}, {columns}) "
            f"FROM ({query}) AS sqlml_rows")
