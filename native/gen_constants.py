"""Writes the C headers generated from their one declaration in Python (run by CMake at build time).

  python gen_constants.py constants CROSSING_PY OUTPUT_H   sqlml_constants.h from python/sqlml/crossing.py
  python gen_constants.py variables CONFIG_PY OUTPUT_H     sqlml_variables.h from python/sqlml/config.py

Each source is loaded by path (sqlml is not installed yet), so it may import only the
standard library. A header is rewritten only when its text changes: nothing that
includes it is rebuilt otherwise.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from types import ModuleType
from typing import Iterable

# The X-macro signatures native/plugin.c expands, by kind.
_SIGNATURES = {"STR": "STR(plugin, name, default, comment)", "BOOL": "BOOL(plugin, name, default, comment)",
               "LL": "LL(plugin, name, default, min, max, comment)"}
_C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_C_ESCAPES = {ord('"'): '\\"', ord("\\"): "\\\\", ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"}
_INT32 = range(-(2**31), 2**31)


def load(source: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # NamedTuple and dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def c_string(text: str) -> str:
    """`text` as a C string literal of its UTF-8 bytes: quotes, backslashes and control
    characters escaped, bytes outside printable ASCII as 3-digit octal (a following digit
    cannot extend it, as it would a hex escape), and ?? broken so no trigraph forms."""
    if "\0" in text:
        raise ValueError(f"a C string cannot hold a NUL byte: {text[:80]!r}")
    out, previous = [], 0
    for byte in text.encode("utf-8"):
        if byte in _C_ESCAPES:
            out.append(_C_ESCAPES[byte])
        elif byte == ord("?") and previous == ord("?"):
            out.append("\\?")
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03o}")
        previous = byte
    return '"' + "".join(out) + '"'


def c_integer(value: int) -> str:
    return str(value) if value in _INT32 else f"{value}LL"


def c_identifier(text: str) -> str:
    """Plugin and variable names are pasted into C identifiers (plugin##_##name)."""
    if not _C_IDENTIFIER.fullmatch(text):
        raise ValueError(f"{text!r} must be a C identifier (letters, digits, _) to name a system variable")
    return text


def variable_entry(var) -> str:
    """One system variable as its X-macro call, e.g. LL(sqlml, max_attempts, 3, 1, 10, "...")."""
    head = f"{c_identifier(var.plugin)}, {c_identifier(var.name)}"
    if var.kind == "STR":
        return f"STR({head}, {c_string(var.default)}, {c_string(var.comment)})"
    if var.kind == "BOOL":
        return f"BOOL({head}, {1 if var.default else 0}, {c_string(var.comment)})"
    if var.kind == "LL":
        return (f"LL({head}, {c_integer(var.default)}, {c_integer(var.low)}, {c_integer(var.high)}, "
                f"{c_string(var.comment)})")
    raise ValueError(f"{var.plugin}_{var.name}: kind must be one of {', '.join(_SIGNATURES)}, got {var.kind!r}")


def variables_header(variables: Iterable, plugins: Iterable[str]) -> str:
    """sqlml_variables.h: <PLUGIN>_VARIABLES(STR, BOOL, LL) per plugin, each variable once,
    in table order. A variable of a plugin not in `plugins` is an error, not a silent omission."""
    variables, plugins = list(variables), list(plugins)
    strays = [f"{v.plugin}_{v.name}" for v in variables if v.plugin not in plugins]
    if strays:
        raise ValueError(f"variables of no known plugin ({', '.join(plugins)}): {', '.join(strays)}")
    continued = " \\"
    lines = ["/* Generated from python/sqlml/config.py (SYSTEM_VARIABLES) by native/gen_constants.py:",
             " * do not edit. */",
             "#ifndef SQLML_VARIABLES_H", "#define SQLML_VARIABLES_H", "",
             "/* Each plugin's system variables, one X-macro call each:",
             *[f" *   {signature}" for signature in _SIGNATURES.values()], " */"]
    for plugin in plugins:
        entries = [variable_entry(v) for v in variables if v.plugin == plugin]
        define = f"#define {c_identifier(plugin).upper()}_VARIABLES(STR, BOOL, LL)"
        lines.append(define + (continued if entries else ""))
        lines += [f"  {entry}" + (continued if i < len(entries) - 1 else "") for i, entry in enumerate(entries)]
        lines.append("")
    lines += ["#endif", ""]
    return "\n".join(lines)


def write_if_changed(output: str, text: str) -> None:
    try:
        with open(output, encoding="utf-8") as f:
            if f.read() == text:
                return  # unchanged: nothing that includes it is rebuilt
    except FileNotFoundError:
        pass
    with open(output, "w", encoding="utf-8") as f:
        f.write(text)


def main(what: str, source: str, output: str) -> None:
    if what == "constants":
        text = load(source, "sqlml_crossing").generate_header()
    elif what == "variables":
        config = load(source, "sqlml_config")
        text = variables_header(config.SYSTEM_VARIABLES.values(), config.PLUGINS)
    else:
        raise SystemExit(f"gen_constants.py: first argument must be 'constants' or 'variables', got {what!r}")
    write_if_changed(output, text)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
