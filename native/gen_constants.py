"""Writes sqlml_constants.h from python/sqlml/crossing.py (run by CMake at build time).

Usage: python gen_constants.py CROSSING_PY OUTPUT_H
"""

import importlib.util
import sys


def main(source: str, output: str) -> None:
    spec = importlib.util.spec_from_file_location("sqlml_crossing", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # NamedTuple and dataclasses look their module up
    spec.loader.exec_module(module)
    text = module.generate_header()
    try:
        with open(output) as f:
            if f.read() == text:
                return  # unchanged: nothing that includes it is rebuilt
    except FileNotFoundError:
        pass
    with open(output, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
