"""Training-data export (sqlml_export_s3) into moto's S3, through a fault-injecting stub.

The server's sqlml.so writes to tests/doubles/s3stub.py on 127.0.0.1, which forwards to moto's
S3 server (a third-party implementation of multipart upload) and fails or slows the
UploadPart requests a test asks for. Files are read back from moto with boto3 and
compared with the table they came from.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import time
import uuid

import boto3
import pymysql
import pytest

from sqlml import installer
from tests.doubles.motoserver import moto_server
from tests.doubles.s3stub import S3Stub

BIG_ROWS = 1_000_000


@pytest.fixture(scope="module")
def moto_s3():
    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def stub(moto_s3):
    with S3Stub(moto_s3) as s:
        yield s


@pytest.fixture(scope="module")
def s3_db(db, stub):
    """The server, writing to the stub (and so to moto)."""
    db.base_settings["s3_endpoint_url"] = stub.url
    db.write_settings()
    try:
        yield db
    finally:
        del db.base_settings["s3_endpoint_url"]
        db.write_settings()


@pytest.fixture
def client(moto_s3):
    return boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def bucket(client, stub):
    stub.reset()
    name = f"export-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


def read(client, bucket, key) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def keys(client, bucket) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def uploads(client, bucket) -> list:
    return client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def export(db, sql, args=None, conn=None) -> dict:
    return json.loads(db.scalar(sql, args, conn))


def sql_error(db, sql, args=None) -> tuple[int, str]:
    with pytest.raises(pymysql.err.MySQLError) as info:
        db.query(sql, args)
    return info.value.args[0], info.value.args[1]


@pytest.fixture(scope="module")
def texts(s3_db):
    """Every character CSV and TEXT must take care of, utf8mb4 beyond the BMP, '' and NULL."""
    values = [
        (1, "plain"), (2, "comma, inside"), (3, 'say "hi"'), (4, "line\nbreak"), (5, "cr\rlf\r\n"),
        (6, "tab\there"), (7, "back\\slash"), (8, "nul\x00byte"), (9, "  edge spaces  "),
        (10, "emoji 😀 and 𝄞"), (11, "日本語のテキスト"), (12, ""), (13, None), (14, "\\N"),
        (15, '"'), (16, ","), (17, "Ünïcödé, \"quoted\"\n\ttab"), (18, "NULL"),
    ]
    s3_db.query("DROP TABLE IF EXISTS export_texts")
    s3_db.query("CREATE TABLE export_texts (id INT PRIMARY KEY, t VARCHAR(100) CHARACTER SET utf8mb4, "
                "d DECIMAL(8,3), r DOUBLE, ts DATETIME) CHARACTER SET utf8mb4")
    conn = s3_db.connect()
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO export_texts VALUES (%s, %s, %s, %s, %s)",
                        [(i, t, i * 1.5 if i % 4 else None, i / 8 if i % 5 else None, f"2024-01-{i:02d} 10:11:12")
                         for i, t in values])
    conn.commit()
    conn.close()
    return values


@pytest.fixture(scope="module")
def big(s3_db):
    """1,000,000 rows made on the server: numbers (10,000) x 100."""
    s3_db.query("DROP TABLE IF EXISTS export_big")
    s3_db.query("CREATE TABLE export_big (id INT PRIMARY KEY, label VARCHAR(20), x DOUBLE, note VARCHAR(20))")
    conn = s3_db.connect()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO export_big SELECT (a.n - 1) * 100 + b.n, CONCAT('row,', a.n), b.n / 4, "
                    "IF(b.n % 10 = 0, NULL, 'x\"y') FROM numbers a JOIN numbers b ON b.n <= 100")
    conn.commit()
    conn.close()
    assert s3_db.scalar("SELECT COUNT(*) FROM export_big") == BIG_ROWS


# ---- shapes: 0 rows, 1 row, formats, header, NULLs ----------------------------------


def test_zero_rows_write_one_file_holding_only_the_header(s3_db, client, bucket):
    summary = export(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/empty', 'FORMAT CSV HEADER', n, n * 2 AS twice) "
                            "FROM numbers WHERE n < 0")
    assert summary["rows"] == 0
    assert [f["key"] for f in summary["files"]] == ["empty.part_00000"]
    assert keys(client, bucket) == ["empty.part_00000"]
    assert read(client, bucket, "empty.part_00000") == b"n,twice\r\n"
    assert summary["bytes"] == len(b"n,twice\r\n")


def test_one_row_csv_with_header_uses_the_aliases_as_written(s3_db, client, bucket):
    summary = export(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/one', 'format csv header', n, n * 2 AS Twice, "
                            "'a,b' AS `odd, name`) FROM numbers WHERE n = 7")
    assert summary["rows"] == 1 and summary["format"] == "CSV" and summary["header"] is True
    assert read(client, bucket, "one.part_00000") == b'n,Twice,"odd, name"\r\n7,14,"a,b"\r\n'


def test_one_row_text_format_by_default(s3_db, client, bucket):
    summary = export(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/t', '', n, 'x') FROM numbers WHERE n = 3")
    assert summary["format"] == "TEXT" and summary["rows"] == 1
    assert read(client, bucket, "t.part_00000") == b"3\tx\n"


def test_csv_round_trips_every_special_character_and_utf8mb4(s3_db, client, bucket, texts):
    export(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/csv', 'FORMAT CSV HEADER', id, t AS text, d, r, ts) "
                  "FROM export_texts")
    body = read(client, bucket, "csv.part_00000").decode("utf-8")
    rows = list(csv.reader(io.StringIO(body, newline=""), strict=True))
    assert rows[0] == ["id", "text", "d", "r", "ts"]
    expected = s3_db.query("SELECT id, t, d, r, ts FROM export_texts")
    got = {int(r[0]): r for r in rows[1:]}
    assert len(got) == len(expected) == len(texts)
    for id_, t, d, r, ts in expected:
        # csv.reader reads NULL and '' both as '': the raw-bytes test below tells them apart.
        assert got[id_][1] == (t or ""), id_
        assert got[id_][2] == ("" if d is None else str(d))
        assert got[id_][3] == ("" if r is None else f"{r:g}")
        assert got[id_][4] == ts.strftime("%Y-%m-%d %H:%M:%S")


def test_csv_writes_null_as_an_empty_field_and_empty_string_quoted(s3_db, client, bucket, texts):
    export(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/n', 'FORMAT CSV', id, t) FROM export_texts "
                  "WHERE id IN (12, 13, 14, 18)")
    lines = sorted(read(client, bucket, "n.part_00000").split(b"\r\n"))
    assert lines == [b"", b'12,""', b"13,", b"14,\\N", b"18,NULL"]


def test_text_format_matches_the_servers_own_into_outfile(s3_db, client, bucket, texts):
    """FORMAT TEXT is byte for byte what SELECT ... INTO OUTFILE writes with its defaults."""
    outfile = s3_db.server.base_dir / f"outfile-{bucket}.txt"
    s3_db.query(f"SELECT id, t, d, r, ts INTO OUTFILE '{outfile}' CHARACTER SET utf8mb4 FROM export_texts ORDER BY id")
    export(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/txt', 'FORMAT TEXT', id, t, d, r, ts) "
                  "FROM (SELECT * FROM export_texts ORDER BY id LIMIT 1000) q")
    ours = read(client, bucket, "txt.part_00000")
    # Rows split on unescaped LF; order may differ in the aggregate, so compare as sets.
    def records(data: bytes) -> list[bytes]:
        out, cur, i = [], bytearray(), 0
        while i < len(data):
            c = data[i:i + 1]
            if c == b"\\":
                cur += data[i:i + 2]
                i += 2
                continue
            if c == b"\n":
                out.append(bytes(cur))
                cur = bytearray()
            else:
                cur += c
            i += 1
        return sorted(out)
    assert records(ours) == records(outfile.read_bytes())
    assert len(records(ours)) == len(texts)
    assert b"13\t\\N\t" in ours  # NULL as \N
    outfile.unlink()


# ---- rows written as lines by the shim (native/lines.c), handed over in chunks ------


TRICKY = ["plain", "comma, inside", 'say "hi"', '"', '""', ",", "line\nbreak", "cr\rlf\r\n", "tab\there",
          "back\\slash", "\\", "\\N", "nul\x00byte", "", None, "emoji 😀 and 𝄞", "日本語のテキスト",
          'Ünïcödé, "quoted"\n\ttab', "NULL", "  edge spaces  ", "\r", "\n\n", "a\\\tb\\\nc"]
# Long values, each written over several of the shim's hand-overs at export_part_mb=5: escaping
# doubles the first in TEXT, quoting the second in CSV; one row is longer than a whole part.
LONG = {3001: "REPEAT('\\\\', 2500000)", 6001: "REPEAT('\"', 2500000)", 9001: "REPEAT('a,b\\n', 1000000)",
        12001: "REPEAT('é\\t😀', 400000)", 15001: "REPEAT('x', 6000000)"}
TRICKY_ROWS = 18000


@pytest.fixture(scope="module")
def tricky(s3_db):
    """TRICKY_ROWS rows cycling through TRICKY, with the LONG values at their ids."""
    s3_db.query("DROP TABLE IF EXISTS export_tricky")
    s3_db.query("CREATE TABLE export_tricky (id INT PRIMARY KEY, t LONGTEXT CHARACTER SET utf8mb4, d DECIMAL(10,3), "
                "r DOUBLE) CHARACTER SET utf8mb4")
    conn = s3_db.connect()
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO export_tricky VALUES (%s, %s, %s, %s)",
                        [(i, TRICKY[i % len(TRICKY)], i / 8 if i % 3 else None, i / 7 if i % 5 else None)
                         for i in range(1, TRICKY_ROWS + 1) if i not in LONG])
        for i, value in LONG.items():
            cur.execute(f"INSERT INTO export_tricky VALUES ({i}, {value}, NULL, -0.5)")
    conn.commit()
    conn.close()
    for i in LONG:
        assert s3_db.scalar(f"SELECT LENGTH(t) >= 2500000 FROM export_tricky WHERE id = {i}") == 1


def server_texts(s3_db, sql: str) -> list[tuple]:
    """Rows of sql as the bytes the server gives for each value (CONCAT: the text a UDF gets)."""
    conn = s3_db.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return [tuple(v.encode("utf-8") if isinstance(v, str) else v for v in row) for row in cur.fetchall()]
    finally:
        conn.close()


@pytest.mark.parametrize("fmt", ["CSV", "TEXT"])
def test_lines_written_in_c_are_byte_for_byte_the_python_formatting(s3_db, client, bucket, tricky, fmt):
    """The shim's lines (native/lines.c) equal export.csv_row / text_row on every tricky value,
    over hand-overs, parts and files, rows longer than a part included."""
    from sqlml.engine.functions.export import csv_row, text_row

    format_row = csv_row if fmt == "CSV" else text_row
    with s3_db.settings(s3_endpoint_url=s3_db.base_settings["s3_endpoint_url"], export_part_mb=5, export_file_mb=6):
        summary = export(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/tricky', 'FORMAT {fmt} HEADER', id, t AS text, "
                                "d, r) FROM (SELECT * FROM export_tricky ORDER BY id LIMIT 1000000) q")
    assert summary["rows"] == TRICKY_ROWS and len(summary["files"]) >= 3, summary
    header = format_row((b"id", b"text", b"d", b"r"))
    lines = []
    for f in summary["files"]:
        body = read(client, bucket, f["key"])
        assert body.startswith(header) and len(body) == f["bytes"]
        lines.append(body[len(header):])
    rows = server_texts(s3_db, "SELECT CONCAT(id), t, CONCAT(d), CONCAT(r) FROM export_tricky ORDER BY id")
    expected = [format_row(row) for row in rows]
    assert b"".join(lines) == b"".join(expected)
    # Every file ends where a row ends, and says how many rows it holds.
    at = 0
    for f, body in zip(summary["files"], lines, strict=True):
        assert body == b"".join(expected[at:at + f["rows"]])
        at += f["rows"]
    assert at == TRICKY_ROWS
    if fmt == "CSV":
        records = list(csv.reader(io.StringIO(b"".join(lines).decode("utf-8"), newline=""), strict=True))
        assert [r[1] for r in records] == [(t or b"").decode("utf-8") for _, t, _, _ in rows]
    assert uploads(client, bucket) == []


def test_text_lines_written_in_c_equal_the_servers_own_into_outfile(s3_db, client, bucket, tricky):
    outfile = s3_db.server.base_dir / f"outfile-{bucket}.txt"
    s3_db.query(f"SELECT id, t, d, r INTO OUTFILE '{outfile}' CHARACTER SET utf8mb4 FROM export_tricky ORDER BY id")
    try:
        with s3_db.settings(s3_endpoint_url=s3_db.base_settings["s3_endpoint_url"], export_part_mb=5):
            export(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/txt', 'FORMAT TEXT', id, t, d, r) "
                          "FROM (SELECT * FROM export_tricky ORDER BY id LIMIT 1000000) q")
        assert read(client, bucket, "txt.part_00000") == outfile.read_bytes()
    finally:
        outfile.unlink()


# Byte sequences around the edges of UTF-8 (Unicode's table 3-7), as hex.
UTF8_EDGES = ["C280", "DFBF", "E0A080", "ED9FBF", "EE8080", "EFBFBF", "F0908080", "F48FBFBF", "F3BFBFBF",
              "C0AF", "C1BF", "C2", "E0809F", "E09F80", "EDA080", "EDBFBF", "F08F8080", "F4908080", "F5808080",
              "FF", "80", "E282", "E2822841", "F09F98", "41C328", "EFBFBFBF80"]


@pytest.mark.parametrize("fmt", ["CSV", "TEXT"])
def test_the_shims_utf8_check_is_pythons(s3_db, client, bucket, fmt):
    """A row after the first (the first goes through Python) is checked in C: every edge of
    UTF-8 is accepted or refused exactly as Python's decoder does, the refusal naming the row."""
    from sqlml.engine.functions.export import csv_row, text_row

    valid = []
    for hexed in UTF8_EDGES:
        raw = bytes.fromhex(hexed)
        try:
            raw.decode("utf-8")
            valid.append(hexed)
            continue
        except UnicodeDecodeError:
            pass
        code, message = sql_error(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/u{hexed}', 'FORMAT {fmt}', n, "
                                         f"IF(n = 3, UNHEX('{hexed}'), 'ok') AS payload) "
                                         "FROM (SELECT n FROM numbers WHERE n <= 4 ORDER BY n LIMIT 4) q")
        assert code == 1105 and "column 'payload' of row 3 is not valid UTF-8" in message, (hexed, message)
    assert len(valid) == 9
    export(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/ok', 'FORMAT {fmt}', n, UNHEX(h)) FROM "
                  f"(SELECT n, ELT(n, {', '.join(repr(h) for h in valid)}) AS h FROM numbers WHERE n <= {len(valid)} "
                  "ORDER BY n LIMIT 100) q")
    format_row = csv_row if fmt == "CSV" else text_row
    assert read(client, bucket, "ok.part_00000") == b"".join(
        format_row((str(n).encode(), bytes.fromhex(h))) for n, h in enumerate(valid, 1))
    assert keys(client, bucket) == ["ok.part_00000"] and uploads(client, bucket) == []


def test_a_bad_value_after_many_handed_over_rows_names_its_row(s3_db, client, bucket, big):
    with s3_db.settings(s3_endpoint_url=s3_db.base_settings["s3_endpoint_url"], export_part_mb=5):
        code, message = sql_error(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/late', 'FORMAT CSV', id, "
                                         "IF(id = 654321, UNHEX('E282'), 'ok') AS label) FROM export_big "
                                         "WHERE id <= 700000")
    assert code == 1105 and "column 'label' of row 654321 is not valid UTF-8 text (byte 0xe2 at 0)" in message, message
    assert keys(client, bucket) == [] and uploads(client, bucket) == []


# ---- large exports: multipart, file split, row-for-row comparison ------------------


def test_million_rows_stream_into_split_multipart_files_read_back_row_for_row(s3_db, client, bucket, big):
    with s3_db.settings(s3_endpoint_url=s3_db.base_settings["s3_endpoint_url"], export_part_mb=5, export_file_mb=12):
        summary = export(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/big/train', 'FORMAT CSV HEADER', "
                                "id, label, x, note) FROM export_big")
    assert summary["rows"] == BIG_ROWS
    names = [f["key"] for f in summary["files"]]
    assert names == [f"big/train.part_{i:05d}" for i in range(len(names))] and len(names) >= 2
    assert keys(client, bucket) == names
    assert stub_parts_used(summary)
    got: dict[int, list[str]] = {}
    total_bytes = 0
    for f in summary["files"]:
        body = read(client, bucket, f["key"])
        assert len(body) == f["bytes"]
        assert len(body) < 12 * 1024 * 1024 + 200  # split at export_file_mb, on a row boundary
        total_bytes += len(body)
        rows = list(csv.reader(io.StringIO(body.decode("utf-8"), newline=""), strict=True))
        assert rows[0] == ["id", "label", "x", "note"]  # every file is a CSV of its own
        assert len(rows) - 1 == f["rows"]
        for r in rows[1:]:
            got[int(r[0])] = r
    assert total_bytes == summary["bytes"]
    assert len(got) == BIG_ROWS
    conn = s3_db.connect()
    with conn.cursor(pymysql.cursors.SSCursor) as cur:
        cur.execute("SELECT id, label, x, note FROM export_big")
        n = 0
        for id_, label, x, note in cur:
            assert got[id_] == [str(id_), label, f"{x:g}", note or ""], id_
            n += 1
    conn.close()
    assert n == BIG_ROWS
    assert uploads(client, bucket) == []


def server_cpu_s(s3_db) -> float:
    """User + system CPU seconds the server process has used (all its threads)."""
    with open(f"/proc/{s3_db.server.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_export_costs_the_server_about_what_its_own_into_outfile_does(s3_db, client, bucket, big):
    """Issue 16: the rows are written as lines in C, not crossed into Python and formatted
    there one by one (4-6x the server CPU of INTO OUTFILE for these rows before; about 1x now)."""
    outfile = s3_db.server.base_dir / f"outfile-{bucket}.csv"
    conn = s3_db.connect()
    try:
        before = server_cpu_s(s3_db)
        s3_db.query(f"SELECT id, label, x, note INTO OUTFILE '{outfile}' FIELDS TERMINATED BY ',' "
                    "OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\\r\\n' FROM export_big", conn=conn)
        local_s = server_cpu_s(s3_db) - before
        before = server_cpu_s(s3_db)
        summary = export(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/cpu', 'FORMAT CSV', id, label, x, note) "
                                "FROM export_big", conn=conn)
        export_s = server_cpu_s(s3_db) - before
    finally:
        conn.close()
        outfile.unlink(missing_ok=True)
    assert summary["rows"] == BIG_ROWS
    print(f"server CPU: export {export_s:.2f} s, INTO OUTFILE {local_s:.2f} s")
    assert export_s <= 2.5 * local_s, (export_s, local_s)


def stub_parts_used(summary) -> bool:
    """The big export really went through multipart upload (files over one part)."""
    return any(f["bytes"] > 5 * 1024 * 1024 for f in summary["files"])


# ---- failures: the upload is aborted, nothing is left -------------------------------


def test_failed_part_aborts_the_upload_and_leaves_no_object(s3_db, client, bucket, stub, big):
    faults = stub.reset(fail_part_from=2, fail_status=403)
    with s3_db.settings(s3_endpoint_url=stub.url, export_part_mb=5, export_file_mb=100):
        code, message = sql_error(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/fail', 'FORMAT CSV', id, label, x) "
                                         "FROM export_big")
    assert faults.failed >= 1 and faults.seen["UploadPart"] >= 2
    assert code == 1105 and "UploadPart" in message and "AccessDenied" in message, message
    assert uploads(client, bucket) == []
    assert keys(client, bucket) == []


def test_failure_in_a_later_file_deletes_the_files_already_finished(s3_db, client, bucket, stub, big):
    faults = stub.reset(fail_part_from=4, fail_status=403)
    with s3_db.settings(s3_endpoint_url=stub.url, export_part_mb=5, export_file_mb=5):
        code, message = sql_error(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/later', 'FORMAT CSV', id, label, x, "
                                         "note) FROM export_big")
    assert faults.failed >= 1 and faults.seen.get("POST uploadId", 0) >= 2  # files finished before the failure
    assert "UploadPart" in message
    assert uploads(client, bucket) == []
    assert keys(client, bucket) == []


def test_a_completed_upload_whose_reply_is_lost_is_deleted(s3_db, client, bucket, stub, big):
    """S3 completed the object but the reply never came: the retry finds no upload, the
    export fails, and the object S3 made anyway is deleted."""
    faults = stub.reset(lose_complete_replies=10)
    with s3_db.settings(s3_endpoint_url=stub.url, export_part_mb=5, export_file_mb=100):
        code, message = sql_error(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/lost', 'FORMAT TEXT', id, label) "
                                         "FROM export_big WHERE id <= 600000")
    assert faults.failed >= 1 and "CompleteMultipartUpload" in message, message
    assert uploads(client, bucket) == []
    assert keys(client, bucket) == []


def test_a_transient_part_failure_is_retried_and_the_export_completes(s3_db, client, bucket, stub, big):
    faults = stub.reset(fail_part_from=2, fail_status=500, fail_times=1)
    with s3_db.settings(s3_endpoint_url=stub.url, export_part_mb=5, export_file_mb=100):
        summary = export(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/retry', 'FORMAT TEXT', id) "
                                "FROM export_big WHERE id <= 800000")
    assert faults.failed == 1
    assert summary["rows"] == 800000
    body = read(client, bucket, "retry.part_00000")
    assert sorted(int(v) for v in body.split()) == list(range(1, 800001))


def export_until_first_part(s3_db, faults, sql: str, conn=None):
    """Runs sql on a thread until the S3 stub has seen its first UploadPart (at most 60 s).
    Returns the thread and the outcome it fills: {"value": rows} or {"error": args}."""
    outcome = {}

    def run():
        try:
            outcome["value"] = s3_db.query(sql, conn=conn)
        except pymysql.err.MySQLError as exc:
            outcome["error"] = exc.args

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 60
    while faults.seen.get("UploadPart", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    return t, outcome


def test_kill_query_mid_export_aborts_the_upload(s3_db, client, bucket, stub, big):
    faults = stub.reset(part_delay_s=0.5)
    with s3_db.settings(s3_endpoint_url=stub.url, export_part_mb=5, export_file_mb=100):
        conn = s3_db.connect()
        conn_id = conn.thread_id()
        t, outcome = export_until_first_part(s3_db, faults, f"SELECT sqlml_export_s3('s3://{bucket}/killed', "
                                                            "'FORMAT CSV', id, label, x, note) FROM export_big", conn)
        assert faults.seen.get("UploadPart", 0) >= 1
        s3_db.query(f"KILL QUERY {conn_id}")
        t.join(60)
        assert not t.is_alive()
        conn.close()
    print("KILL QUERY during export:", outcome)
    assert "error" in outcome, outcome
    assert outcome["error"][0] in (1317, 1028), outcome  # query execution was interrupted
    assert uploads(client, bucket) == []
    assert keys(client, bucket) == []
    assert s3_db.scalar("SELECT 1") == 1


# ---- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize("uri, words", [
    ("http://bucket/p", "s3://bucket/prefix"),
    ("s3://bucket", "s3://bucket/prefix"),
    ("s3://bucket/", "prefix"),
    ("s3://Bad_Bucket/p", "bucket name"),
    ("s3://bucket/dir/", "prefix"),
])
def test_malformed_uri_fails_when_the_statement_starts(s3_db, uri, words):
    code, message = sql_error(s3_db, "SELECT sqlml_export_s3(%s, 'FORMAT CSV', n) FROM numbers", (uri,))
    assert code in (1123, 1210), message
    assert words in message


@pytest.mark.parametrize("options, words", [
    ("FORMAT JSON", "unknown format 'JSON'"),
    ("FORMAT", "unknown format"),
    ("FORMAT CSV HEADER EXTRA", "unknown option"),
    ("OVERWRITE MAYBE", "OVERWRITE takes ON or OFF"),
])
def test_unknown_format_or_option_fails_when_the_statement_starts(s3_db, options, words):
    code, message = sql_error(s3_db, "SELECT sqlml_export_s3('s3://b-b-b/p', %s, n) FROM numbers", (options,))
    assert code == 1123 and words in message, message


def test_too_few_arguments_or_non_constant_options_are_refused(s3_db):
    assert sql_error(s3_db, "SELECT sqlml_export_s3('s3://bbb/p', 'FORMAT CSV') FROM numbers")[0] == 1123
    code, message = sql_error(s3_db, "SELECT sqlml_export_s3('s3://bbb/p', CONCAT('FORMAT ', 'CSV', n), n) "
                                     "FROM numbers")
    assert code == 1123 and "options" in message


def test_missing_bucket_is_a_clear_error(s3_db, client):
    code, message = sql_error(s3_db, "SELECT sqlml_export_s3('s3://no-such-bucket-here/p', 'FORMAT CSV', n) "
                                     "FROM numbers WHERE n < 3")
    assert code == 1105 and "bucket 'no-such-bucket-here' does not exist" in message, message


def test_a_value_that_is_not_utf8_text_fails_and_names_column_and_row(s3_db, client, bucket):
    for fmt in ("CSV", "TEXT"):
        code, message = sql_error(
            s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/bin{fmt}', 'FORMAT {fmt}', n, "
                   "IF(n = 2, UNHEX('C328FF'), 'ok') AS payload) FROM (SELECT n FROM numbers WHERE n <= 3 "
                   "ORDER BY n LIMIT 3) q")
        assert code == 1105 and "column 'payload'" in message and "not valid UTF-8" in message, message
        assert "HEX(payload)" in message
    assert keys(client, bucket) == [] and uploads(client, bucket) == []


def test_existing_export_is_kept_unless_overwrite_on(s3_db, client, bucket):
    sql = f"SELECT sqlml_export_s3('s3://{bucket}/again', %s, n) FROM numbers WHERE n <= %s"
    export(s3_db, sql, ("FORMAT TEXT", 5))
    code, message = sql_error(s3_db, sql, ("FORMAT TEXT", 5))
    assert code == 1210 and "already exists" in message and "OVERWRITE ON" in message, message
    # A stale later file of an older, larger export goes too.
    client.put_object(Bucket=bucket, Key="again.part_00003", Body=b"old")
    client.put_object(Bucket=bucket, Key="again.part_00003.keep", Body=b"not ours")
    summary = export(s3_db, sql, ("FORMAT TEXT OVERWRITE ON", 2))
    assert summary["rows"] == 2
    assert keys(client, bucket) == ["again.part_00000", "again.part_00003.keep"]
    assert sorted(read(client, bucket, "again.part_00000").split()) == [b"1", b"2"]


def test_a_key_sorting_before_the_first_part_does_not_hide_an_existing_export(s3_db, client, bucket):
    """Issue 12.8: 'hide.part_!x' sorts before 'hide.part_00000'; OVERWRITE OFF must still refuse."""
    sql = f"SELECT sqlml_export_s3('s3://{bucket}/hide', 'FORMAT TEXT', n) FROM numbers WHERE n <= 3"
    export(s3_db, sql)
    for key in ("hide.part_!x", "hide.part_/x", "hide.part_.x", "hide.part_0x"):
        client.put_object(Bucket=bucket, Key=key, Body=b"not an export part")
    code, message = sql_error(s3_db, sql)
    assert code == 1210 and "hide.part_00000 already exists" in message, message
    # Keys that merely share the prefix are no export: a fresh prefix beside them is written.
    client.delete_object(Bucket=bucket, Key="hide.part_00000")
    assert export(s3_db, sql)["rows"] == 3


# ---- GROUP BY, repeated results, DROP FUNCTION -------------------------------------


def test_group_by_writes_one_export_per_group_at_its_own_uri(s3_db, client, bucket):
    rows = s3_db.query(f"SELECT n % 3 AS g, sqlml_export_s3(CONCAT('s3://{bucket}/by-g/', n % 3), 'FORMAT CSV', n) "
                       "FROM numbers WHERE n <= 30 GROUP BY n % 3 ORDER BY g")
    assert [g for g, _ in rows] == [0, 1, 2]
    for g, summary in rows:
        summary = json.loads(summary)
        assert summary["uri"] == f"s3://{bucket}/by-g/{g}" and summary["rows"] == 10
        body = read(client, bucket, f"by-g/{g}.part_00000")
        assert sorted(int(v) for v in body.split()) == [n for n in range(1, 31) if n % 3 == g]


def test_group_by_with_one_constant_uri_is_refused(s3_db, client, bucket):
    code, message = sql_error(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/same', 'FORMAT CSV', n) FROM numbers "
                                     "WHERE n <= 30 GROUP BY n % 3")
    assert code == 1210 and "would overwrite" in message and "own URI" in message, message
    assert uploads(client, bucket) == []


def test_uri_changing_within_a_group_is_refused(s3_db, client, bucket):
    code, message = sql_error(s3_db, f"SELECT sqlml_export_s3(CONCAT('s3://{bucket}/p', n), 'FORMAT CSV', n) "
                                     "FROM numbers WHERE n <= 3")
    assert code == 1210 and "changed within group" in message, message
    assert keys(client, bucket) == [] and uploads(client, bucket) == []


def test_drop_function_during_an_export_is_survived(s3_db, client, bucket, stub, big):
    faults = stub.reset(part_delay_s=0.3)
    with s3_db.settings(s3_endpoint_url=stub.url, export_part_mb=5, export_file_mb=100):
        t, outcome = export_until_first_part(s3_db, faults, f"SELECT sqlml_export_s3('s3://{bucket}/dropped', "
                                                            "'FORMAT CSV', id) FROM export_big WHERE id <= 900000")
        s3_db.query("DROP FUNCTION sqlml_export_s3")
        t.join(120)
        assert not t.is_alive()
    print("DROP FUNCTION during export:", outcome)
    try:
        assert s3_db.scalar("SELECT 1") == 1
        if "value" in outcome:  # the running statement kept its function and finished
            assert json.loads(outcome["value"][0][0])["rows"] == 900000
        else:
            assert uploads(client, bucket) == [] and keys(client, bucket) == []
    finally:
        with s3_db.connect() as conn:
            installer.install(conn, s3_db.base_settings, log=lambda *_: None)
    assert export(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/after', 'FORMAT CSV', 1)")["rows"] == 1


def test_rows_keep_the_order_of_an_ordered_derived_table(s3_db, client, bucket):
    export(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/ordered', 'FORMAT TEXT', n) "
                  "FROM (SELECT n FROM numbers ORDER BY n DESC LIMIT 18446744073709551615) q")
    assert [int(v) for v in read(client, bucket, "ordered.part_00000").split()] == list(range(10000, 0, -1))


def test_window_function_use_is_refused_on_mariadb(s3_db, client, bucket):
    """MariaDB lets a UDF aggregate be a window function (MySQL refuses the syntax): each
    row's result is a new export of the same URI, refused at the second one."""
    sql = f"SELECT n, sqlml_export_s3('s3://{bucket}/w', 'FORMAT CSV', n) OVER () FROM numbers WHERE n <= 3"
    code, message = sql_error(s3_db, sql)
    if s3_db.kind == "mysql":
        assert code == 1064  # syntax error: not a window function there
    else:
        assert code == 1210 and "would overwrite" in message, message
    assert uploads(client, bucket) == []


# ---- settings and option grammar (no server needed) --------------------------------


def test_export_settings_are_validated_where_they_enter():
    from sqlml import config

    s = config.parse({"export_part_mb": "5", "export_file_mb": "1", "s3_endpoint_url": "http://127.0.0.1:9000"})
    assert (s.export_part_mb, s.export_file_mb, s.s3_endpoint_url) == (5, 1, "http://127.0.0.1:9000")
    for key, raw, words in [("export_part_mb", "4", "from 5 to 5120"), ("export_file_mb", "0", "from 1 to"),
                            ("s3_endpoint_url", "s3.local", "http:// or https://")]:
        with pytest.raises(config.SettingError, match=words):
            config.parse({key: raw})


def test_option_grammar_follows_aurora_wording():
    from sqlml.engine.functions.export import Options, parse_options

    assert parse_options("") == Options("TEXT", False, False)
    assert parse_options("  format   csv   header ") == Options("CSV", True, False)
    assert parse_options("FORMAT TEXT HEADER OVERWRITE ON") == Options("TEXT", True, True)
    assert parse_options("OVERWRITE off FORMAT CSV") == Options("CSV", False, False)
    for bad in ("HEADER", "FORMAT CSV FORMAT TEXT", "FORMAT CSV OVERWRITE", "MANIFEST ON"):
        with pytest.raises(Exception, match="option|OVERWRITE|given twice"):
            parse_options(bad)


def test_two_connections_export_at_once(s3_db, client, bucket, big):
    results = {}

    def run(i):
        results[i] = export(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/conc{i}', 'FORMAT TEXT', id) "
                                   f"FROM export_big WHERE id % 2 = {i} AND id <= 400000")

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for i in (0, 1):
        assert results[i]["rows"] == 200000
        body = read(client, bucket, f"conc{i}.part_00000")
        assert sorted(int(v) for v in body.split()) == list(range(2 - i, 400001, 2))


def test_a_latin1_column_is_converted_on_mysql_and_refused_on_mariadb(s3_db, client, bucket):
    """MySQL converts every argument to utf8mb4 for us (udf metadata service); MariaDB
    passes the column's bytes, which are not UTF-8 here: a clear error with the fix."""
    s3_db.query("DROP TABLE IF EXISTS export_latin1")
    s3_db.query("CREATE TABLE export_latin1 (t VARCHAR(20) CHARACTER SET latin1)")
    s3_db.query("INSERT INTO export_latin1 VALUES ('café')")
    sql = f"SELECT sqlml_export_s3('s3://{bucket}/l1', 'FORMAT CSV', t) FROM export_latin1"
    if s3_db.kind == "mysql":
        export(s3_db, sql)
        assert read(client, bucket, "l1.part_00000") == "café\r\n".encode()
    else:
        code, message = sql_error(s3_db, sql)
        assert code == 1105 and "column 't' of row 1 is not valid UTF-8" in message, message
        export(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/l2', 'FORMAT CSV', CONVERT(t USING utf8mb4) AS t) "
                      "FROM export_latin1")
        assert read(client, bucket, "l2.part_00000") == "café\r\n".encode()


def test_files_smaller_than_a_part_are_single_puts(s3_db, client, bucket, stub, big):
    faults = stub.reset()
    with s3_db.settings(s3_endpoint_url=stub.url, export_part_mb=8, export_file_mb=1):
        summary = export(s3_db, f"SELECT sqlml_export_s3('s3://{bucket}/small', 'FORMAT CSV HEADER', id, label) "
                                "FROM export_big WHERE id <= 200000")
    files = summary["files"]
    assert len(files) >= 3 and sum(f["rows"] for f in files) == 200000
    assert all(1024 * 1024 <= f["bytes"] < 1024 * 1024 + 100 for f in files[:-1])
    assert faults.seen.get("UploadPart", 0) == 0 and faults.seen.get("POST uploads", 0) == 0
    ids = []
    for f in files:
        rows = list(csv.reader(io.StringIO(read(client, bucket, f["key"]).decode(), newline="")))
        assert rows[0] == ["id", "label"]
        ids += [int(r[0]) for r in rows[1:]]
    assert sorted(ids) == list(range(1, 200001))


# ---- who may export; Aurora's INTO OUTFILE S3 as written (MySQL) ---------------------------


def test_export_needs_the_s3_role(s3_db, client, bucket):
    with s3_db.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP USER IF EXISTS 'exporter'@'%'")
        cur.execute("CREATE USER 'exporter'@'%' IDENTIFIED BY 'pw'")
        cur.execute("GRANT SELECT ON sqlml_test.* TO 'exporter'@'%'")
    sql = f"SELECT sqlml_export_s3('s3://{bucket}/acl', 'FORMAT CSV', n) FROM numbers WHERE n <= 3"
    try:
        with s3_db.connect(user="exporter", password="pw") as conn:
            with pytest.raises(pymysql.err.MySQLError) as err:
                s3_db.query(sql, conn=conn)
            assert err.value.args[0] == 1227 and "AWS_SELECT_S3_ACCESS" in err.value.args[1]
        assert keys(client, bucket) == [] and uploads(client, bucket) == []
        s3_db.query("GRANT AWS_SELECT_S3_ACCESS TO 'exporter'@'%'")
        with s3_db.connect(user="exporter", password="pw") as conn:
            s3_db.query("SET ROLE AWS_SELECT_S3_ACCESS", conn=conn)
            assert export(s3_db, sql, conn=conn)["rows"] == 3
        assert read(client, bucket, "acl.part_00000") == b"1\r\n2\r\n3\r\n"
    finally:
        s3_db.query("DROP USER IF EXISTS 'exporter'@'%'")


@pytest.mark.server("mysql")
def test_aurora_into_outfile_s3_runs_as_written_on_mysql(s3_db, client, bucket):
    s3_db.query("SET GLOBAL sqlml_rewrite = ON")  # the suite runs with it off (conftest)
    try:
        _into_outfile(s3_db, client, bucket)
    finally:
        s3_db.query("SET GLOBAL sqlml_rewrite = OFF")


def _into_outfile(s3_db, client, bucket):
    rows = s3_db.query(f"SELECT n, n * 2 AS twice FROM numbers WHERE n <= 4 ORDER BY n "
                       f"INTO OUTFILE S3 's3://{bucket}/aurora' FORMAT CSV HEADER")
    assert json.loads(rows[0][0])["rows"] == 4
    assert read(client, bucket, "aurora.part_00000") == b"n,twice\r\n1,2\r\n2,4\r\n3,6\r\n4,8\r\n"
    s3_db.query(f"select n from numbers where n = 9 into outfile s3 's3://{bucket}/text'")
    assert read(client, bucket, "text.part_00000") == b"9\n"
    for sql, words in [(f"SELECT * FROM numbers INTO OUTFILE S3 's3://{bucket}/x'", "SELECT *"),
                       (f"SELECT n + 1 FROM numbers INTO OUTFILE S3 's3://{bucket}/x'", "with AS"),
                       (f"SELECT n FROM numbers INTO OUTFILE S3 's3://{bucket}/x' MANIFEST ON", "MANIFEST")]:
        code, message = sql_error(s3_db, sql)
        assert code == 1644 and "not supported" in message and words in message, message
