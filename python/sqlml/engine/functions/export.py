"""Training-data export: `sqlml_export_s3(uri, options, col1, ...)`, Aurora's INTO OUTFILE S3 as an aggregate.

Aurora MySQL writes a query's rows to S3 with `SELECT ... INTO OUTFILE S3 's3://bucket/prefix'
FORMAT CSV HEADER`; a stock server cannot parse that clause, so the same export is an
aggregate over the query:

    SELECT sqlml_export_s3('s3://bucket/prefix', 'FORMAT CSV HEADER', id, review AS text, label)
    FROM (SELECT ...) q;

The C shim calls clear() at each group's start, the object itself for the group's result
(a JSON summary of what was written) and close() when the statement ends, with or
without a result. Rows come two ways: add(uri, options, *values) takes one row and
answers how many bytes of lines the shim may gather before handing them over; the shim
then writes the rows that follow as lines itself (native/lines.c, the same bytes as
csv_row/text_row below) and hands them over with add_lines(uri, lines, rows) once they
fill that room, whose answer is the next room. A group's first row, a row whose URI
differs and a row the shim cannot write (a value that is not UTF-8) come through add,
so the row numbers of errors stay exact. Rows stream into a buffer that is
sent as one multipart-upload part whenever it reaches `export_part_mb` (at most
PARTS_IN_FLIGHT parts travel at once, on engine worker threads); a file is finished
and the next one (`prefix.part_00001`, ...) started once it reaches `export_file_mb`.
So memory stays near (PARTS_IN_FLIGHT + 2) x export_part_mb whatever the row count
(the shim's lines, the part being handed over, the parts in flight).
A failure, or a statement that ends without a result (KILL QUERY, an error
elsewhere), aborts the upload in progress and deletes the files this export already
finished: a failed export leaves no object behind.

Formats (every value arrives as the server's own text for it: the shim asks the
server to pass each value as a string, so numbers, dates and decimals read exactly as
a SELECT shows them; text must be UTF-8):
  CSV   RFC 4180: fields separated by ',', records ended by CRLF; a field holding ',',
        '"', CR or LF is enclosed in '"' with '"' doubled; an empty string is written
        `""` and NULL as an empty, unenclosed field, so the two stay apart.
  TEXT  MySQL's INTO OUTFILE default: fields separated by TAB, lines ended by LF;
        '\\' TAB LF are preceded by '\\', NUL is written `\\0` and NULL `\\N` (LOAD DATA
        reads it back as it was).
A value that is not valid UTF-8 (a BLOB or binary string, or a column in another
character set on MariaDB) cannot be written in either format: the export fails and
names the column and row; HEX(col) or CONVERT(col USING utf8mb4) is the fix.
"""

from __future__ import annotations

import collections
import concurrent.futures
import enum
import json
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

from ...crossing import KIND_STRING, NOT_FIXED_DEC, Prepared
from ...errors import ArgumentError, ServiceTimeout, SqlmlError
from ...services import s3
from ..dispatch import wait_for

FUNCTION = "sqlml_export_s3"
SUMMARY_MAX_LENGTH = 65535  # the JSON summary names each file; a TEXT column's size
PARTS_IN_FLIGHT = 2
MIB = 1024 * 1024
MAX_PARTS_PER_FILE = 10_000  # S3's limit on parts in one multipart upload
PART_SUFFIX = ".part_{:05d}"
_PART_KEY = re.compile(r"\.part_\d{5,}$")
CONTENT_TYPES = {"CSV": "text/csv; charset=utf-8", "TEXT": "text/plain; charset=utf-8"}


# ---- options -------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    format: str = "TEXT"  # Aurora's default
    header: bool = False
    overwrite: bool = False

    def text(self) -> str:
        return (f"FORMAT {self.format}{' HEADER' if self.header else ''}"
                f" OVERWRITE {'ON' if self.overwrite else 'OFF'}")


def parse_options(raw: str) -> Options:
    """Aurora's wording, any case and spacing: [FORMAT {CSV|TEXT} [HEADER]] [OVERWRITE {ON|OFF}]."""
    words = raw.split()
    fmt, header, overwrite = "TEXT", False, False
    seen: set[str] = set()
    i = 0
    while i < len(words):
        word = words[i].upper()
        if word in seen:
            raise ArgumentError(f"{FUNCTION}: option {word} given twice in {raw!r}")
        seen.add(word)
        if word == "FORMAT":
            value = words[i + 1].upper() if i + 1 < len(words) else ""
            if value not in CONTENT_TYPES:
                raise ArgumentError(f"{FUNCTION}: unknown format {value or '(none)'!r}; use FORMAT CSV or FORMAT TEXT")
            fmt = value
            i += 2
            if i < len(words) and words[i].upper() == "HEADER":
                header = True
                seen.add("HEADER")
                i += 1
        elif word == "OVERWRITE":
            value = words[i + 1].upper() if i + 1 < len(words) else ""
            if value not in ("ON", "OFF"):
                raise ArgumentError(f"{FUNCTION}: OVERWRITE takes ON or OFF, got {value or '(none)'!r}")
            overwrite = value == "ON"
            i += 2
        else:
            raise ArgumentError(f"{FUNCTION}: unknown option {words[i]!r} in {raw!r}; "
                                "options: FORMAT {CSV|TEXT} [HEADER] [OVERWRITE {ON|OFF}]")
    return Options(fmt, header, overwrite)


# ---- formats -------------------------------------------------------------------


class NotRepresentable(SqlmlError):
    pass


_CSV_NEEDS_QUOTES = re.compile(rb'[",\r\n]').search
_TEXT_NEEDS_ESCAPE = re.compile(rb"[\\\t\n\x00]")
_TEXT_ESCAPES = {b"\\": b"\\\\", b"\t": b"\\\t", b"\n": b"\\\n", b"\x00": b"\\0"}


def _text_escape(match: re.Match) -> bytes:
    return _TEXT_ESCAPES[match.group()]


def csv_row(values) -> bytes:
    # Fast path, one scan of the whole row: no NULL, no '', ASCII, nothing to quote.
    if None not in values and all(values):
        flat = b"".join(values)
        if flat.isascii() and not _CSV_NEEDS_QUOTES(flat):
            return b",".join(values) + b"\r\n"
    out = []
    for v in values:
        if v is None:
            out.append(b"")
        elif not v:
            out.append(b'""')
        else:
            if not v.isascii():
                v.decode("utf-8")  # UnicodeDecodeError: the caller names column and row
            out.append(b'"' + v.replace(b'"', b'""') + b'"' if _CSV_NEEDS_QUOTES(v) else v)
    return b",".join(out) + b"\r\n"


def text_row(values) -> bytes:
    if None not in values:
        flat = b"".join(values)
        if flat.isascii() and not _TEXT_NEEDS_ESCAPE.search(flat):
            return b"\t".join(values) + b"\n"
    out = []
    for v in values:
        if v is None:
            out.append(b"\\N")
        else:
            if not v.isascii():
                v.decode("utf-8")
            out.append(_TEXT_NEEDS_ESCAPE.sub(_text_escape, v))
    return b"\t".join(out) + b"\n"


ROW_FORMATS: dict[str, Callable] = {"CSV": csv_row, "TEXT": text_row}


class LineFormat(enum.IntEnum):
    """The format the shim writes rows in; mirrors enum lines_format in native/lines.h."""
    CSV = 0
    TEXT = 1


def _bad_value(names: tuple[str, ...], values, row: int) -> NotRepresentable:
    for i, v in enumerate(values):
        if v is not None and not v.isascii():
            try:
                v.decode("utf-8")
            except UnicodeDecodeError as exc:
                return NotRepresentable(
                    f"{FUNCTION}: column '{names[i]}' of row {row} is not valid UTF-8 text (byte 0x{v[exc.start]:02x} "
                    f"at {exc.start}); export HEX({names[i]}) or CONVERT({names[i]} USING utf8mb4)")
    return NotRepresentable(f"{FUNCTION}: row {row} cannot be written")


# ---- one export (one group) ------------------------------------------------------


class _Pending:
    """Bytes waiting to become a part: the chunks as they came, joined only when sent.

    A chunk of lines from the shim is usually a whole part by itself, and is then sent
    as it is, without a copy."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def __iadd__(self, data: bytes) -> "_Pending":
        if data:
            self.chunks.append(data)
            self.size += len(data)
        return self

    def take(self) -> bytes:
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks, self.size = [], 0
        return body


@dataclass
class _File:
    key: str
    first_row: int
    rows: int = 0
    bytes: int = 0
    upload_id: str | None = None
    parts: list = field(default_factory=list)
    # Set before the PutObject or CompleteMultipartUpload that makes the object: from
    # then on it may exist (even if the reply is lost), so an abort deletes it.
    committing: bool = False


class Export:
    """One export to one prefix: files of parts, uploaded from worker threads.

    The server thread formats rows into `buffer`; a full buffer becomes a part sent
    by a worker while the next rows are formatted (at most PARTS_IN_FLIGHT parts in
    flight). Every wait is bounded; any failure aborts the export (abort()).
    """

    def __init__(self, engine, loc: s3.Location, options: Options, names: tuple[str, ...]):
        settings = engine.settings
        self.engine = engine
        self.loc = loc
        self.options = options
        self.names = names
        self.format_row = ROW_FORMATS[options.format]
        self.content_type = CONTENT_TYPES[options.format]
        self.header = self.format_row(tuple(n.encode("utf-8") for n in names)) if options.header else b""
        self.part_bytes = settings.export_part_mb * MIB
        self.file_bytes = settings.export_file_mb * MIB
        self.wait_s = 2 * settings.timeout_s + 5
        self.bucket = s3.Bucket(engine.clients.get("s3"), loc, settings.max_attempts, settings.timeout_s)
        self.rows = 0
        self.buffer = _Pending()
        self.files: list[_File] = []
        self.file: _File | None = None
        self.sent = 0  # bytes of the current file already handed to parts
        self.flush_at = 0  # buffer length at which _flush() decides what to send
        self.in_flight: collections.deque = collections.deque()
        self.started = time.monotonic()
        self.waited_s = 0.0  # time this server thread spent waiting for S3
        self._run(self._check_target)

    # -- running S3 operations on worker threads, waiting here with the GIL released --

    def _run(self, fn, *args, killable: bool = True):
        return self._wait(self.engine.dispatcher.spawn(fn, *args), killable)

    def _wait(self, future: concurrent.futures.Future, killable: bool = True):
        """The future's value. KILL QUERY ends the wait within a poll (engine/dispatch.py),
        except for the cleanup of a failed or killed export (abort), which must finish."""
        started = time.monotonic()
        try:
            if not killable:
                return future.result(timeout=self.wait_s)
            return wait_for(future, self.wait_s, f"{FUNCTION} writing {self.loc.uri()}")
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ServiceTimeout(f"{FUNCTION}: S3 did not answer within {self.wait_s:g} s "
                                 f"(2 x timeout_s + 5) writing {self.loc.uri()}") from None
        finally:
            self.waited_s += time.monotonic() - started

    def _check_target(self) -> None:
        """The bucket exists, and (OVERWRITE OFF) no file of this prefix does."""
        # Part keys are prefix.part_ and digits: list from just below "0" ('/' sorts before it).
        start = self.loc.prefix + ".part_"
        existing = self.bucket.first_matching(
            start, start + "/", lambda key: len(key) - len(start) >= 5 and key[len(start):].isascii()
            and key[len(start):].isdigit())
        if existing is not None and not self.options.overwrite:
            raise ArgumentError(f"{FUNCTION}: {self.loc.uri(existing)} already exists; "
                                "add OVERWRITE ON to the options to replace the export")

    # -- rows --------------------------------------------------------------------

    def add(self, values: tuple) -> None:
        """One row; kept short, it runs for every row of the export."""
        try:
            line = self.format_row(values)
        except UnicodeDecodeError:
            raise _bad_value(self.names, values, self.rows + 1) from None
        if self.file is None:
            self._open_file()
        self.buffer += line
        self.rows += 1
        if len(self.buffer) >= self.flush_at:
            self._flush()

    def add_lines(self, lines: bytes, rows: int) -> None:
        """Rows the shim wrote as lines, handed over once they filled room()."""
        if self.file is None:
            self._open_file()
        self.buffer += lines
        self.rows += rows
        if len(self.buffer) >= self.flush_at:
            self._flush()

    def room(self) -> int:
        """Bytes of lines the shim may gather before handing them over: what brings the
        buffer to its next flush, so parts and files end on the same rows as row by row."""
        if self.file is None:  # the next row opens a file, starting with the header
            return max(1, min(self.part_bytes, self.file_bytes) - len(self.header))
        return max(1, self.flush_at - len(self.buffer))

    def _open_file(self) -> None:
        self.file = _File(self.loc.prefix + PART_SUFFIX.format(len(self.files)), self.rows)
        self.files.append(self.file)
        self.sent = 0
        self.buffer += self.header
        self.flush_at = min(self.part_bytes, self.file_bytes)

    def _flush(self) -> None:
        if len(self.buffer) >= self.part_bytes:
            self._send_part()
        parts = len(self.file.parts) + len(self.in_flight)
        if self.sent + len(self.buffer) >= self.file_bytes or parts >= MAX_PARTS_PER_FILE - 1:
            self._finish_file()
        else:
            self.flush_at = min(self.part_bytes, self.file_bytes - self.sent)

    def _send_part(self) -> None:
        f = self.file
        if f.upload_id is None:
            f.upload_id = self._run(self.bucket.start_upload, f.key, self.content_type)
        while len(self.in_flight) >= PARTS_IN_FLIGHT:
            f.parts.append(self._wait(self.in_flight.popleft()))
        body = self.buffer.take()
        self.sent += len(body)
        number = len(f.parts) + len(self.in_flight) + 1
        self.in_flight.append(self.engine.dispatcher.spawn(self.bucket.upload_part, f.key, f.upload_id, number, body))

    def _finish_file(self) -> None:
        f = self.file
        f.rows = self.rows - f.first_row
        f.bytes = self.sent + len(self.buffer)
        if f.upload_id is None:
            body = self.buffer.take()
            f.committing = True
            self._run(self.bucket.put, f.key, body, self.content_type)
        else:
            if self.buffer:
                self._send_part()
            while self.in_flight:
                f.parts.append(self._wait(self.in_flight.popleft()))
            f.committing = True
            self._run(self.bucket.complete_upload, f.key, f.upload_id, f.parts)
            f.upload_id = None
        self.file = None

    def finish(self) -> dict:
        """Writes what is left and returns the summary; a query of no rows writes one file (header only)."""
        if self.file is None and not self.files:
            self._open_file()
        if self.file is not None:
            self._finish_file()
        if self.options.overwrite:
            self._run(self._delete_stale)
        seconds = time.monotonic() - self.started
        return {
            "uri": self.loc.uri(),
            "format": self.options.format,
            "header": self.options.header,
            "rows": self.rows,
            "bytes": sum(f.bytes for f in self.files),
            "files": [{"key": f.key, "rows": f.rows, "bytes": f.bytes} for f in self.files],
            "seconds": round(seconds, 3),
            "s3_wait_seconds": round(self.waited_s, 3),
        }

    def _delete_stale(self) -> None:
        """OVERWRITE ON: files of an earlier, longer export under this prefix go too."""
        mine = {f.key for f in self.files}
        for key in self.bucket.keys(self.loc.prefix + ".part_"):
            if key not in mine and _PART_KEY.search(key) and key[:key.rindex(".part_")] == self.loc.prefix:
                self.bucket.delete(key)

    def abort(self) -> None:
        """Leaves no object behind: aborts the upload in progress, deletes finished files."""
        for future in self.in_flight:
            future.cancel()
        for future in self.in_flight:
            try:
                future.result(timeout=self.wait_s)
            except Exception:  # the part's own failure is what is being cleaned up
                pass
        self.in_flight.clear()
        self.buffer = _Pending()
        for f in self.files:
            try:
                if f.upload_id is not None:
                    self._run(self.bucket.abort_upload, f.key, f.upload_id, killable=False)
                    f.upload_id = None
            except SqlmlError as exc:
                _log_cleanup_failure(self.loc.uri(f.key), exc)
            try:
                if f.committing:  # finished, or maybe: deleting a missing key is a no-op
                    self._run(self.bucket.delete, f.key, killable=False)
            except SqlmlError as exc:
                _log_cleanup_failure(self.loc.uri(f.key), exc)
        self.files = []
        self.file = None


def _log_cleanup_failure(uri: str, exc: SqlmlError) -> None:
    # The statement already failed with its own error; this one goes to the error log.
    print(f"sqlml: {FUNCTION}: could not clean up {uri}: {exc.sql_message}", file=sys.stderr)


# ---- the aggregate ---------------------------------------------------------------


class ExportAggregate:
    """sqlml_export_s3 for one statement: one export per group.

    Without GROUP BY the query is one group. With GROUP BY each group is its own
    export, to the URI its rows give (e.g. CONCAT('s3://b/p-', region)): that URI must
    be the same on every row of a group, and two groups of one statement may not
    write the same URI. Groups finished before a failure keep their files.
    """

    def __init__(self, engine, uri: str | None, options: Options, names: tuple[str, ...]):
        self.engine = engine
        self.const_loc = s3.parse_uri(uri, FUNCTION) if uri is not None else None
        self.options = options
        self.names = names
        self.line_format = LineFormat[options.format]  # read by the shim at init (native/lines.h)
        self.export: Export | None = None
        self.result: bytes | None = None
        self.failed = False
        self.groups = 0
        self.written: set[s3.Location] = set()

    def _fail(self, exc: Exception):
        """Aborts the group in progress; the statement fails with exc."""
        self.failed = True
        if self.export is not None:
            export, self.export = self.export, None
            export.abort()
        raise exc

    def clear(self) -> None:
        if self.export is not None:  # a group that ended without a result
            export, self.export = self.export, None
            export.abort()
        self.result = None
        self.failed = False

    def _start(self, uri: bytes | None) -> Export:
        self.groups += 1
        if self.const_loc is not None:
            loc = self.const_loc
        elif uri is None:
            raise ArgumentError(f"{FUNCTION}: the S3 URI (1st argument) is NULL in group {self.groups}")
        else:
            loc = s3.parse_uri(_utf8(uri, "S3 URI"), FUNCTION)
        if loc in self.written:
            raise ArgumentError(f"{FUNCTION}: group {self.groups} would overwrite {loc.uri()}, written by an "
                                "earlier group; with GROUP BY give each group its own URI, e.g. "
                                "CONCAT('s3://bucket/prefix-', group_key)")
        self.written.add(loc)
        return Export(self.engine, loc, self.options, self.names)

    def _export_for(self, uri: bytes | None) -> Export | None:
        """The group's export, started by its first row; None once the statement failed."""
        if self.export is not None and self.const_loc is not None:
            return self.export  # the common case: one URI for the statement
        if self.failed:
            return None  # the statement already has its error
        if self.export is None:
            self.export = self._start(uri)
        elif self.const_loc is None and uri != self.export.loc.uri().encode():
            raise ArgumentError(f"{FUNCTION}: the S3 URI changed within group {self.groups} "
                                f"(from {self.export.loc.uri()!r}); it must be the same for every row of a group")
        return self.export

    def add(self, uri, _options, *values) -> int:
        """One row. Returns the room for the shim's lines (Export.room), 0 to keep rows coming here."""
        try:
            export = self._export_for(uri)
            if export is None:
                return 0
            export.add(values)
            return export.room()
        except BaseException as exc:
            self._fail(exc)

    def add_lines(self, uri, lines: bytes, rows: int) -> int:
        """`rows` rows the shim wrote as lines, all with this URI. Returns the next room."""
        try:
            export = self._export_for(uri)
            if export is None:
                return 0
            export.add_lines(lines, rows)
            return export.room()
        except BaseException as exc:
            self._fail(exc)

    def __call__(self):
        if self.failed:
            return None
        if self.result is not None:  # the server may ask a group's result more than once
            return self.result
        try:
            if self.export is None:
                if self.const_loc is None:
                    # No rows and no constant URI: nowhere to write an empty export.
                    self.result = json.dumps({"uri": None, "rows": 0, "bytes": 0, "files": []}).encode()
                    return self.result
                self.export = self._start(None)
            summary = self.export.finish()
        except BaseException as exc:
            self._fail(exc)
        self.export = None
        self.result = json.dumps(summary).encode()
        return self.result

    def close(self) -> None:
        """End of statement: an export that got no result (killed, failed elsewhere) is aborted."""
        if self.export is not None:
            export, self.export = self.export, None
            export.abort()


def _utf8(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ArgumentError(f"{FUNCTION}: the {what} is not valid UTF-8") from None


def prepare(engine, name: str, kind: int, types: tuple, consts: tuple, names: tuple):
    """(uri, options, value, ...): checks what is constant now, before any row."""
    if len(types) < 3:
        raise ArgumentError(f"{name}: takes (s3_uri, options, column [, column ...])")
    uri, options = consts[0], consts[1]
    if options is None:
        raise ArgumentError(f"{name}: 2nd argument (options) must be a constant string, e.g. 'FORMAT CSV HEADER'")
    opts = parse_options(_utf8(options, "options") if isinstance(options, bytes) else str(options))
    if uri is not None and not isinstance(uri, bytes):
        raise ArgumentError(f"{name}: 1st argument must be an S3 URI string ('s3://bucket/prefix')")
    column_names = tuple(
        (_utf8(n, "column name") if n is not None else f"column{i + 1}") for i, n in enumerate(names[2:]))
    # Who may export (AWS_SELECT_S3_ACCESS) is checked by functions.prepare, as for every function.
    engine.clients.get("s3")  # built now, at statement start, not on the first row
    aggregate = ExportAggregate(engine, _utf8(uri, "S3 URI") if uri is not None else None, opts, column_names)
    # Every value crosses as the server's text for it (numbers, dates, decimals as SELECT shows them).
    return Prepared(aggregate, SUMMARY_MAX_LENGTH, NOT_FIXED_DEC, (KIND_STRING,) * len(types))
