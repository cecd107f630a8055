"""The development venv's Python packages, read from pyproject.toml: the one list.

    python3.11 tools/py_deps.py          prints every requirement, one a line: the build
                                         backend ([build-system] requires, since `make build`
                                         installs with --no-build-isolation), the runtime
                                         dependencies and every optional extra, whatever its name
    <venv>/bin/python tools/py_deps.py --check
                                         fails, naming them, if any of those is not installed
                                         at a version the requirement allows

The Makefile installs the printed list and keeps it in the venv's stamp, so a requirement
added to pyproject.toml is installed by the next `make build`. Standard library only for
the listing (it runs on the base interpreter, before the venv exists).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """Build requirements, dependencies, then each extra in file order; the project itself
    (an extra such as `all = ["sqlml[test]"]`) and repeats are left out."""
    with open(pyproject, "rb") as f:
        data = tomllib.load(f)
    project = data["project"]
    own = _normalize(project["name"])
    listed = [*data.get("build-system", {}).get("requires", []), *project.get("dependencies", [])]
    for extra in project.get("optional-dependencies", {}).values():
        listed.extend(extra)
    result: list[str] = []
    for requirement in listed:
        if _normalize(_name(requirement)) != own and requirement not in result:
            result.append(requirement)
    return result


def _name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if not match:
        raise SystemExit(f"tools/py_deps.py: {PYPROJECT.name}: cannot read a package name in {requirement!r}")
    return match.group(1)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def missing(wanted: list[str]) -> list[str]:
    """The requirements this interpreter's environment does not satisfy, with what it has."""
    from importlib import metadata

    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip vendors packaging; every venv has pip
        from pip._vendor.packaging.requirements import Requirement
    problems = []
    for text in wanted:
        requirement = Requirement(text)
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{text} (not installed)")
            continue
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{text} (installed: {version})")
    return problems


def main(argv: list[str]) -> int:
    wanted = requirements()
    if argv[1:] == ["--check"]:
        problems = missing(wanted)
        if problems:
            print(f"tools/py_deps.py: {sys.prefix} lacks {'; '.join(problems)}; see pip's message above: "
                  "fix the requirement in pyproject.toml (or the network) and rerun `make venv`", file=sys.stderr)
            return 1
        return 0
    if argv[1:]:
        print("usage: tools/py_deps.py [--check]", file=sys.stderr)
        return 2
    print("\n".join(wanted))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
