"""The documentation stays true: every link resolves, and the configuration table is SYSTEM_VARIABLES.

Pure Python (no server, no network): runs under `pytest -m "not server"`. A relative link
must name a file of the repository and, with `#anchor`, a heading of that page under
GitHub's slug rules; an http(s) link is only checked to be well formed (never fetched).
docs/configuration.md's system-variable table must list every variable of
sqlml.config.SYSTEM_VARIABLES once, with its sqlml.cnf key, default and range.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest

from sqlml.config import BOOL, LL, ON_ERROR_POLICIES, STR, SYSTEM_VARIABLES, SystemVariable

ROOT = Path(__file__).resolve().parent.parent
DOC_PAGES = sorted([ROOT / "README.md", ROOT / "SECURITY.md", *(ROOT / "docs").glob("*.md")])

_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target) and ![alt](target); the target may carry a "title" after a space.
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass(frozen=True)
class Link:
    page: Path
    line: int
    target: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}: ({self.target})"


def _prose_lines(page: Path) -> list[tuple[int, str]]:
    """The page's lines outside fenced code blocks, with inline code spans removed:
    `f[_x](a, b)` in code is SQL, not a link."""
    lines, in_fence = [], False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            lines.append((number, _CODE_SPAN.sub("", line)))
    return lines


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: markup dropped, lowercase, punctuation removed
    except '-' and '_', each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a page; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    in_fence = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else _HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(page: Path) -> list[Link]:
    return [Link(page, number, match.group(1))
            for number, line in _prose_lines(page) for match in _LINK.finditer(line)]


ALL_LINKS = [link for page in DOC_PAGES for link in links(page)]


def link_problem(link: Link) -> str | None:
    """Why a link does not resolve, or None."""
    target = link.target
    if not target:
        return "empty link target"
    parts = urllib.parse.urlsplit(target)
    if parts.scheme in ("http", "https"):
        if not parts.hostname or "." not in parts.hostname or any(c.isspace() for c in target):
            return "malformed URL (expected http(s)://host.domain/...)"
        return None
    if parts.scheme:
        return f"unexpected scheme {parts.scheme!r}: use a relative path or an http(s) URL"
    path = urllib.parse.unquote(parts.path)
    if path.startswith("/"):
        return "absolute path: use a path relative to the page, as GitHub resolves it"
    file = (link.page.parent / path).resolve() if path else link.page
    if not file.is_relative_to(ROOT):
        return f"{path} leaves the repository"
    if not file.exists():
        return f"{file.relative_to(ROOT)} does not exist"
    if parts.fragment:
        if file.suffix != ".md" or file.is_dir():
            return f"#{parts.fragment} points into {file.relative_to(ROOT)}, which has no headings"
        if parts.fragment not in anchors(file):
            return (f"{file.relative_to(ROOT)} has no heading with anchor #{parts.fragment}; "
                    f"its anchors are {sorted(anchors(file))}")
    return None


def test_docs_have_links_to_check():
    # The link pattern must find the README's documentation index, or the tests below prove nothing.
    targets = {link.target for link in links(ROOT / "README.md")}
    assert {"docs/sql.md", "docs/configuration.md"} <= targets, targets


@pytest.mark.parametrize("link", ALL_LINKS, ids=str)
def test_every_doc_link_resolves(link: Link):
    problem = link_problem(link)
    assert problem is None, f"{link}: {problem}"


def test_link_check_catches_a_missing_file_and_anchor(tmp_path):
    # The checker itself: a missing file, a missing heading, a bad URL are each reported.
    page = ROOT / "docs" / "sql.md"
    assert link_problem(Link(page, 1, "nowhere.md")) is not None
    assert link_problem(Link(page, 1, "configuration.md#no-such-heading")) is not None
    assert link_problem(Link(page, 1, "#batching")) is None
    assert link_problem(Link(page, 1, "https://")) is not None
    assert link_problem(Link(page, 1, "configuration.md#monitoring-status-variables")) is None


def test_github_slug_rules():
    assert github_slug("Aurora's SQL verbatim on MySQL (the pre-parse rewrite)") == \
        "auroras-sql-verbatim-on-mysql-the-pre-parse-rewrite"
    assert github_slug("Monitoring: status variables") == "monitoring-status-variables"
    assert github_slug("`sqlml_status()` and snake_case") == "sqlml_status-and-snake_case"


# ---------------------------------------------------------------- the system-variable table

CONFIGURATION = ROOT / "docs" / "configuration.md"
TABLE_HEADER = ["system variable", "`sqlml.cnf` key", "default", "range", "meaning"]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def variable_rows() -> dict[str, dict[str, str]]:
    """The rows of configuration.md's system-variable table, by variable name."""
    lines = CONFIGURATION.read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|") and _cells(line) == TABLE_HEADER), None)
    assert start is not None, f"{CONFIGURATION.name}: no table with the header {' | '.join(TABLE_HEADER)}"
    rows: dict[str, dict[str, str]] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = _cells(line)
        assert len(cells) == len(TABLE_HEADER), f"{CONFIGURATION.name}: {len(cells)} cells in {line!r}"
        name = cells[0].strip("`")
        assert name not in rows, f"{CONFIGURATION.name}: {name} has two rows"
        rows[name] = dict(zip(("name", "key", "default", "range", "meaning"), cells, strict=True))
    return rows


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def expected_default(var: SystemVariable) -> str:
    """The default as the table writes it: `text` or empty, ON/OFF, or a number and unit."""
    if var.kind == STR:
        return f"`{var.default}`" if var.default else "empty"
    if var.kind == BOOL:
        return "ON" if var.default else "OFF"
    return f"{var.default:,}{var.unit_text}"


def test_configuration_table_lists_every_system_variable_once():
    assert sorted(variable_rows()) == sorted(SYSTEM_VARIABLES)


@pytest.mark.parametrize("name", sorted(SYSTEM_VARIABLES))
def test_configuration_table_states_the_key_default_and_range(name: str):
    var = SYSTEM_VARIABLES[name]
    row = variable_rows().get(name)
    assert row is not None, f"{CONFIGURATION.name} does not list {name}"
    assert re.match(rf"`{var.key}`", row["key"]), f"{name}: sqlml.cnf key is {var.key}, the table says {row['key']}"
    assert row["default"] == expected_default(var), \
        f"{name}: the default is {expected_default(var)!r}, the table says {row['default']!r}"
    if var.kind == LL:
        match = re.fullmatch(r"([\d,]+) to ([\d,]+)(?: (\S+))?", row["range"])
        assert match, f"{name}: range must read 'LOW to HIGH unit', got {row['range']!r}"
        low, high, unit = _number(match.group(1)), _number(match.group(2)), match.group(3) or ""
        assert (low, high, unit) == (var.low, var.high, var.unit), \
            f"{name}: range is {var.low} to {var.high}{var.unit_text}, the table says {row['range']!r}"
    elif var.kind == BOOL:
        assert row["range"] == "ON, OFF", f"{name}: a BOOL variable's range is 'ON, OFF', got {row['range']!r}"
    else:
        assert row["range"], f"{name}: say what text is allowed"
        if var.key == "on_error":
            assert all(f"`{policy}`" in row["range"] for policy in ON_ERROR_POLICIES), row["range"]
