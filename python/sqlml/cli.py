"""The `sqlml` command: install, uninstall, translate, version.

    sqlml install [--host H --port P | --socket S] [--user U] [--password PW] [--set key=value ...]
    sqlml uninstall [connection options]
    sqlml translate [FILE]        Aurora CREATE FUNCTION ... ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT -> SQL
    sqlml serve [--config F ...]  the local inference service (see sqlml.local)
    sqlml version
"""

from __future__ import annotations

import argparse
import re
import sys

from . import __version__


def _connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3306)
    p.add_argument("--socket", help="unix socket (instead of --host/--port)")
    p.add_argument("--user", default="root")
    p.add_argument("--password", default=None)


def _settings(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"sqlml: --set needs key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def split_statements(text: str) -> list[str]:
    """Splits a script at ';' outside quotes (enough for Aurora DDL files)."""
    parts, cur, quote = [], [], None
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
            cur.append(ch)
        elif ch == ";":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        from .local import main as serve_main  # its own options: sqlml serve --help

        return serve_main(argv[1:])
    parser = argparse.ArgumentParser(prog="sqlml", description="Machine learning from SQL for MariaDB and MySQL.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_install = sub.add_parser("install", help="copy sqlml.so into the server's plugin_dir and create the functions")
    _connection_args(p_install)
    p_install.add_argument("--plugin-dir", help="override the server's plugin_dir (must be the same directory)")
    p_install.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                           help="a setting for sqlml.cnf, e.g. comprehend_endpoint_url=http://127.0.0.1:8080")
    p_uninstall = sub.add_parser("uninstall", help="drop the sqlml functions")
    _connection_args(p_uninstall)
    p_translate = sub.add_parser("translate", help="turn Aurora SageMaker DDL into stock-server SQL")
    p_translate.add_argument("file", nargs="?", help="file with Aurora DDL (default: standard input)")
    sub.add_parser("serve", help="run the local inference service (sqlml serve --help)")
    sub.add_parser("version", help="print the engine version")
    args = parser.parse_args(argv)

    if args.command == "version":
        print(f"sqlml {__version__}")
        return 0
    if args.command == "translate":
        from .translate import TranslateError, translate

        text = open(args.file, encoding="utf-8").read() if args.file else sys.stdin.read()
        for statement in split_statements(text):
            if not re.match(r"\s*CREATE\b", statement, re.IGNORECASE):
                print(statement + ";")
                continue
            try:
                print(translate(statement) + ";")
            except TranslateError as exc:
                print(f"sqlml translate: {exc.sql_message}\n  in: {statement[:200]}", file=sys.stderr)
                return 2
        return 0

    from . import config, installer

    conn = installer.connect(args.host, args.port, args.socket, args.user, args.password)
    try:
        if args.command == "install":
            try:
                installer.install(conn, _settings(args.set), plugin_dir=args.plugin_dir)
            except config.SettingError as exc:
                raise SystemExit(f"sqlml: {exc}") from None
        else:
            installer.uninstall(conn)
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
