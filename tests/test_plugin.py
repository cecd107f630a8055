"""The plugin part of sqlml.so: Aurora_ml status variables and sqlml's system variables.

Status variables are read the way a DBA or an exporter reads them (SHOW GLOBAL STATUS,
information_schema / performance_schema), and checked against an independent count:
the requests the fake service actually received.
"""

import concurrent.futures
import dataclasses
import importlib.util
import subprocess
import sys
import threading
import types
from pathlib import Path

import pymysql
import pytest

from sqlml import config

ROOT = Path(__file__).resolve().parent.parent

AURORA = ["Aurora_ml_logical_request_cnt", "Aurora_ml_logical_response_cnt", "Aurora_ml_actual_request_cnt",
          "Aurora_ml_actual_response_cnt", "Aurora_ml_cache_hit_cnt", "Aurora_ml_retry_request_cnt",
          "Aurora_ml_single_request_cnt"]


def status(db, conn=None) -> dict:
    rows = db.query("SHOW GLOBAL STATUS WHERE Variable_name LIKE 'Aurora_ml%' OR Variable_name LIKE 'Sqlml%'",
                    conn=conn)
    return {name: int(value) for name, value in rows}


def variables(db, pattern) -> dict:
    return dict(db.query(f"SHOW GLOBAL VARIABLES LIKE '{pattern}'"))


def test_aurora_counters_are_status_variables(db):
    names = set(status(db))
    assert set(AURORA) <= names
    assert {"Sqlml_batched_row_cnt", "Sqlml_warmup_cnt", "Sqlml_error_cnt", "Sqlml_throttle_cnt",
            "Sqlml_timeout_cnt", "Sqlml_batch_max_rows", "Sqlml_service_time_us"} <= names
    plugins = dict(db.query("SELECT PLUGIN_NAME, PLUGIN_STATUS FROM information_schema.PLUGINS "
                            "WHERE PLUGIN_NAME IN ('sqlml', 'aws', 'aurora_ml')"))
    assert plugins == {"sqlml": "ACTIVE", "aws": "ACTIVE", "aurora_ml": "ACTIVE"}


def test_counters_are_live_and_match_the_requests_sent(db, fake):
    before = status(db)
    rows = db.query("SELECT aws_sagemaker_invoke_endpoint_real('echo-live', 'REAL', 1, n) FROM numbers "
                    "WHERE n <= 40")
    assert sorted(r[0] for r in rows) == [float(i) for i in range(1, 41)]
    after = status(db)
    sent = fake.stats(log=False)["requests"]
    delta = {k: after[k] - before[k] for k in after}
    assert sent == 40
    assert delta["Aurora_ml_logical_request_cnt"] == 40
    assert delta["Aurora_ml_logical_response_cnt"] == 40
    assert delta["Aurora_ml_actual_request_cnt"] == sent
    assert delta["Aurora_ml_actual_response_cnt"] == sent
    assert delta["Aurora_ml_single_request_cnt"] == 40
    assert delta["Aurora_ml_cache_hit_cnt"] == 0
    # The same inputs again: all from the cache, nothing sent.
    db.query("SELECT aws_sagemaker_invoke_endpoint_real('echo-live', 'REAL', 1, n) FROM numbers WHERE n <= 40")
    again = status(db)
    assert again["Aurora_ml_cache_hit_cnt"] - after["Aurora_ml_cache_hit_cnt"] == 40
    assert again["Aurora_ml_actual_request_cnt"] == after["Aurora_ml_actual_request_cnt"]
    # sqlml_status() reads the same memory.
    assert db.status()["aurora"]["actual_request_cnt"] == again["Aurora_ml_actual_request_cnt"]


def test_a_statements_own_single_requests_are_all_counted_when_it_ends(db, fake):
    """From its second request on, a statement counts the single requests it sends from
    its own thread in bulk (engine/tally.py's InlineTally): once it ends, every one is in
    the status variables and in sqlml_status()'s per-target figures."""
    before = status(db)
    rows = db.query("SELECT aws_sagemaker_invoke_endpoint_real('echo-tally', 'REAL', 1, n) FROM numbers "
                    "WHERE n <= 30")
    assert sorted(r[0] for r in rows) == [float(i) for i in range(1, 31)]
    after = status(db)
    delta = {k: after[k] - before[k] for k in after}
    assert fake.stats(log=False)["requests"] == 30
    assert delta["Aurora_ml_actual_request_cnt"] == delta["Aurora_ml_actual_response_cnt"] == 30
    assert delta["Aurora_ml_single_request_cnt"] == delta["Aurora_ml_logical_response_cnt"] == 30
    assert delta["Sqlml_service_time_us"] > 0
    (target,) = [t for t in db.status()["targets"] if t["target"] == "echo-tally"]
    assert target["requests"] == target["rows"] == target["inline_requests"] == 30
    assert target["service_time_s"] > 0 and target["max_batch_rows"] == 1


def test_batch_counters(db, fake):
    before = status(db)
    db.query("SELECT aws_sagemaker_invoke_endpoint_real('echo-batch', 'REAL', 100, n) FROM numbers "
             "WHERE (SELECT sqlml_warm_sagemaker('echo-batch', 100, n) FROM numbers WHERE n <= 250) >= 0 "
             "AND n <= 250")
    after = status(db)
    assert after["Aurora_ml_actual_request_cnt"] - before["Aurora_ml_actual_request_cnt"] == 3
    assert after["Sqlml_batched_row_cnt"] - before["Sqlml_batched_row_cnt"] == 250
    assert after["Sqlml_warmup_cnt"] - before["Sqlml_warmup_cnt"] == 1
    assert after["Sqlml_batch_max_rows"] >= 100


def test_errors_and_retries_are_counted(db, fake):
    before = status(db)
    fake.fail_next(2, code="ThrottlingException", service="sagemaker")
    assert db.scalar("SELECT aws_sagemaker_invoke_endpoint_real('echo-retry', 'REAL', 1, 7)") == 7.0
    after = status(db)
    assert after["Aurora_ml_retry_request_cnt"] - before["Aurora_ml_retry_request_cnt"] == 2
    assert after["Sqlml_throttle_cnt"] - before["Sqlml_throttle_cnt"] == 2
    assert after["Aurora_ml_actual_request_cnt"] - before["Aurora_ml_actual_request_cnt"] == 3


def flush_global_status_statement(db) -> str:
    """MariaDB 11.5 made FLUSH STATUS reset the session's status only; the global
    counters (ours) need FLUSH GLOBAL STATUS there, which 10.11 does not parse."""
    version = tuple(int(p) for p in db.server.version.split("-")[0].split(".")[:2])
    return "FLUSH GLOBAL STATUS" if db.flavor == "mariadb" and version >= (11, 5) else "FLUSH STATUS"


def test_flush_status_resets_the_counters(db, fake):
    db.query("SELECT aws_sagemaker_invoke_endpoint_real('echo-flush', 'REAL', 1, n) FROM numbers WHERE n <= 5")
    assert status(db)["Aurora_ml_logical_request_cnt"] > 0
    flush = flush_global_status_statement(db)
    if flush != "FLUSH STATUS":
        db.query("FLUSH STATUS")
        assert status(db)["Aurora_ml_logical_request_cnt"] > 0, "FLUSH STATUS now resets global status here"
    db.query(flush)
    assert all(v == 0 for k, v in status(db).items() if k.startswith("Aurora_ml_")), status(db)
    db.query("SELECT aws_sagemaker_invoke_endpoint_real('echo-flush', 'REAL', 1, n) FROM numbers WHERE n <= 5")
    assert status(db)["Aurora_ml_cache_hit_cnt"] == 5


def test_counters_are_exact_under_concurrent_connections(db, fake):
    before = status(db)
    per_conn, conns = 150, 8

    def run(i):
        with db.connect() as conn:
            rows = db.query(f"SELECT aws_sagemaker_invoke_endpoint_real('echo-conc{i}', 'REAL', 1, n) "
                            f"FROM numbers WHERE n <= {per_conn}", conn=conn)
            return len(rows)

    with concurrent.futures.ThreadPoolExecutor(conns) as pool:
        assert sum(pool.map(run, range(conns))) == per_conn * conns
    after = status(db)
    sent = fake.stats(log=False)["requests"]
    assert after["Aurora_ml_logical_request_cnt"] - before["Aurora_ml_logical_request_cnt"] == per_conn * conns
    assert after["Aurora_ml_logical_response_cnt"] - before["Aurora_ml_logical_response_cnt"] == per_conn * conns
    assert after["Aurora_ml_actual_request_cnt"] - before["Aurora_ml_actual_request_cnt"] == sent


def test_exporters_see_the_counters_in_the_status_tables(db, fake):
    """mysqld_exporter and friends read SHOW GLOBAL STATUS or these tables."""
    table = "performance_schema.global_status" if db.kind == "mysql" else "information_schema.GLOBAL_STATUS"
    rows = db.query(f"SELECT VARIABLE_NAME, VARIABLE_VALUE FROM {table} WHERE VARIABLE_NAME LIKE 'Aurora_ml%'")
    assert {name.lower() for name, _ in rows} == {n.lower() for n in AURORA}


# ---- system variables --------------------------------------------------------------------


def shown(var: config.SystemVariable) -> str:
    """The table's default as SHOW VARIABLES shows it."""
    if var.kind == config.BOOL:
        return "ON" if var.default else "OFF"
    return str(var.default)


def test_system_variables_exist_with_the_tables_defaults(db, reset_variables):
    """plugin.c's declarations are generated from config.SYSTEM_VARIABLES: the server
    shows exactly the table's variables, each at the table's default."""
    names = ("sqlml%", "aws_default%", "aurora_ml%")
    assert set().union(*(variables(db, pattern) for pattern in names)) == set(config.SYSTEM_VARIABLES)
    # The suite starts its servers with sqlml_rewrite OFF (conftest): every variable back
    # to the default the server was built with (reset_variables turns rewrite OFF again).
    with db.connect() as conn, conn.cursor() as cur:
        for name in config.SYSTEM_VARIABLES:
            cur.execute(f"SET GLOBAL {name} = DEFAULT")
    now = {name: value for pattern in names for name, value in variables(db, pattern).items()}
    assert now == {name: shown(var) for name, var in config.SYSTEM_VARIABLES.items()}


def test_the_server_describes_each_variable_as_the_table_does(db):
    """Ranges (both servers) and, on MariaDB, defaults, types and comments as the server's
    own tables report them: the generated C strings reached the server intact."""
    table = config.SYSTEM_VARIABLES
    ll = {name: (str(var.low), str(var.high)) for name, var in table.items() if var.kind == config.LL}
    if db.flavor == "mysql":
        rows = db.query("SELECT VARIABLE_NAME, MIN_VALUE, MAX_VALUE FROM performance_schema.variables_info "
                        "WHERE VARIABLE_NAME LIKE 'sqlml%' OR VARIABLE_NAME LIKE 'aws_default%' "
                        "OR VARIABLE_NAME LIKE 'aurora_ml%'")
        assert {name for name, _, _ in rows} == set(table)
        assert {name: (low, high) for name, low, high in rows if name in ll} == ll
        return
    rows = db.query("SELECT LOWER(VARIABLE_NAME), VARIABLE_TYPE, DEFAULT_VALUE, NUMERIC_MIN_VALUE, "
                    "NUMERIC_MAX_VALUE, VARIABLE_COMMENT FROM information_schema.SYSTEM_VARIABLES "
                    "WHERE VARIABLE_NAME LIKE 'sqlml%' OR VARIABLE_NAME LIKE 'aws_default%' "
                    "OR VARIABLE_NAME LIKE 'aurora_ml%'")
    described = {name: rest for name, *rest in rows}
    assert set(described) == set(table)
    for name, var in table.items():
        kind, default, low, high, comment = described[name]
        assert comment == var.comment, name
        assert default == shown(var), name
        assert kind == {config.STR: "VARCHAR", config.BOOL: "BOOLEAN", config.LL: "BIGINT"}[var.kind], name
        if var.kind == config.LL:
            assert (low, high) == ll[name], name


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_constants", ROOT / "native" / "gen_constants.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_default_passes_set_globals_check_and_means_the_settings_default():
    """The server's default of each variable, as SET GLOBAL ... = DEFAULT hands it to the
    engine, is accepted and gives back Settings' default (scale and unit agree)."""
    defaults = config.Settings()
    for name, var in config.SYSTEM_VARIABLES.items():
        value = bool(var.default) if var.kind == config.BOOL else var.default
        key, raw = config.system_variable_raw(name, value)
        assert key == var.key
        assert getattr(config.parse({key: raw}), key) == pytest.approx(getattr(defaults, key)), name


@pytest.mark.parametrize("change, message", [
    ({"kind": config.LL, "key": "region"}, "cannot carry region's default"),
    ({"kind": config.BOOL}, "cannot carry max_attempts's default 3"),
    ({"low": 5, "high": 9}, "default 3 is outside 5..9"),
    ({"key": "timeout_s", "scale": 7.0, "low": 0}, "not a whole number"),
    ({"plugin": "foo"}, "plugin must be one of"),
])
def test_a_row_that_contradicts_settings_fails_at_build_time(change, message):
    row = {"plugin": "sqlml", "name": "probe", "kind": config.LL, "key": "max_attempts", "comment": "",
           "low": 1, "high": 10, **change}
    with pytest.raises(ValueError, match=message):
        config.SystemVariable(**row)


def test_the_build_generates_the_variable_lists_from_config_alone(tmp_path):
    """CMake runs this before sqlml is installed: config.py must load by path, with no
    sqlml import, and give one X-macro call per variable of each plugin."""
    header = tmp_path / "sqlml_variables.h"
    subprocess.run([sys.executable, "-I", str(ROOT / "native" / "gen_constants.py"), "variables",
                    str(ROOT / "python" / "sqlml" / "config.py"), str(header)], check=True, cwd=tmp_path)
    text = header.read_text()
    for name, var in config.SYSTEM_VARIABLES.items():
        assert text.count(f"{var.kind}({var.plugin}, {var.name}, ") == 1, name
    assert [line.split("(")[0] for line in text.splitlines() if line.startswith("#define ")] == [
        "#define SQLML_VARIABLES_H", "#define AWS_VARIABLES", "#define SQLML_VARIABLES", "#define AURORA_ML_VARIABLES"]


def test_generated_c_strings_reach_c_byte_for_byte(tmp_path):
    """Comments and defaults with quotes, backslashes, control characters, trigraph
    sequences, % and UTF-8 compile (trigraphs on) to exactly their UTF-8 bytes."""
    gen = load_generator()
    texts = ['say "hi"', "back\\slash\\", "two\nlines\tand tab\r", "??/ ??= ??' ???( ?", "% s %d",
             "caf\u00e9 \u2014 \U0001F600", "\x7f1 \x01", "\u00e97 then digits 123", ""]
    rows = [types.SimpleNamespace(plugin="sqlml", name=f"v{i}", kind="STR", default=text, comment=texts[-1 - i])
            for i, text in enumerate(texts)]
    rows.append(types.SimpleNamespace(plugin="aws", name="big", kind="LL", default=2**40, low=-(2**40), high=2**62,
                                      comment="ll"))
    (tmp_path / "sqlml_variables.h").write_text(gen.variables_header(rows, ["aws", "sqlml", "aurora_ml"]))
    (tmp_path / "probe.c").write_text("""
#include <stdio.h>
#include "sqlml_variables.h"
#define OUT(s) fwrite(s, 1, sizeof(s) - 1, stdout), putchar(0)
#define STR(plugin, name, def, comment) OUT(def); OUT(comment);
#define LL(plugin, name, def, min, max, comment) printf("%lld %lld %lld", (long long)def, (long long)min, \\
    (long long)max), putchar(0), OUT(comment);
int main(void) { AWS_VARIABLES(STR, BOOL, LL) SQLML_VARIABLES(STR, BOOL, LL) AURORA_ML_VARIABLES(STR, BOOL, LL) }
""")
    subprocess.run(["gcc", "-std=c11", "-trigraphs", "-Wall", "-Werror", "-o", "probe", "probe.c"],
                   cwd=tmp_path, check=True)
    out = subprocess.run([str(tmp_path / "probe")], capture_output=True, check=True).stdout
    expected = [f"{2**40} {-(2**40)} {2**62}", "ll"] + [t for i, text in enumerate(texts)
                                                      for t in (text, texts[-1 - i])]
    assert out.split(b"\0")[:-1] == [t.encode() for t in expected]


def test_the_generator_refuses_what_c_cannot_say():
    gen = load_generator()
    row = types.SimpleNamespace(plugin="sqlml", name="ok", kind="STR", default="", comment="a\0b")
    with pytest.raises(ValueError, match="NUL"):
        gen.variables_header([row], ["sqlml"])
    with pytest.raises(ValueError, match="no known plugin"):
        gen.variables_header([dataclasses.replace(config.SYSTEM_VARIABLES["sqlml_region"], plugin="aws")], ["sqlml"])
    with pytest.raises(ValueError, match="C identifier"):
        gen.variables_header([types.SimpleNamespace(**{**vars(row), "comment": "", "name": "bad-name"})], ["sqlml"])


def test_set_global_reaches_the_engine_at_the_next_statement(db, fake, reset_variables):
    with db.connect() as conn, conn.cursor() as cur:
        assert db.status()["settings"]["on_error"] == "error"
        cur.execute("SET GLOBAL sqlml_on_error = 'null'")
        cur.execute("SET GLOBAL sqlml_max_attempts = 5")
        cur.execute("SET GLOBAL aurora_ml_inference_timeout = 1500")
        cur.execute("SET GLOBAL sqlml_cache_enabled = OFF")
        settings = db.status()["settings"]
        assert (settings["on_error"], settings["max_attempts"], settings["timeout_s"], settings["cache_enabled"]) \
            == ("null", 5, 1.5, False)
        # The policy works at once: a failing row is NULL with a warning, not an error.
        fake.fail_next(5, code="ValidationError", status=400, service="sagemaker")
        cur.execute("SELECT aws_sagemaker_invoke_endpoint_real('echo-null', 'REAL', 1, 3)")
        assert cur.fetchall() == ((None,),)
        cur.execute("SHOW WARNINGS")
        assert "ValidationError" in str(cur.fetchall())
        # Back to DEFAULT: sqlml.cnf and the environment decide again.
        cur.execute("SET GLOBAL sqlml_on_error = DEFAULT")
        assert db.status()["settings"]["on_error"] == "error"


def test_inference_timeout_bounds_a_hanging_call(db, fake, reset_variables):
    db.query("SET GLOBAL aurora_ml_inference_timeout = 700")
    fake.hang_next(1, seconds=6, service="sagemaker")
    with pytest.raises(pymysql.MySQLError) as err:
        db.query("SELECT aws_sagemaker_invoke_endpoint_real('echo-hang', 'REAL', 1, 1)")
    assert "timeout" in err.value.args[1].lower()


@pytest.mark.parametrize("statement, allowed", [
    ("SET GLOBAL sqlml_on_error = 'maybe'", "must be one of error, null"),
    ("SET GLOBAL sqlml_max_attempts = 0", "from 1 to 10"),
    ("SET GLOBAL sqlml_max_in_flight = 100000", "from 1 to 256"),
    ("SET GLOBAL aurora_ml_inference_timeout = 0", "from 1 to 86400000 ms"),
    ("SET GLOBAL sqlml_coalesce_linger_ms = 500", "from 0 to 100 ms"),
    ("SET GLOBAL sqlml_comprehend_endpoint_url = 'ftp://example.com'", "http:// or https:// URL"),
    ("SET GLOBAL sqlml_sagemaker_endpoint_url = 'https://user:secret@example.com'", "must not carry credentials"),
    ("SET GLOBAL aws_default_sagemaker_role = 'admin'", "IAM role ARN such as arn:aws:iam::"),
    ("SET GLOBAL sqlml_region = 'us east'", "AWS region name"),
    ("SET GLOBAL sqlml_cache_enabled = 'perhaps'", "ON or OFF"),
    ("SET GLOBAL sqlml_max_attempts = 'three'", None),
])
def test_bad_values_are_refused_saying_what_is_allowed(db, statement, allowed, reset_variables):
    name = statement.split()[2]
    before = variables(db, name)
    with pytest.raises(pymysql.MySQLError) as err:
        db.query(statement)
    if allowed is not None:
        assert allowed in err.value.args[1], err.value.args
        assert err.value.args[0] == 1231
    assert variables(db, name) == before
    assert "secret" not in str(variables(db, "sqlml%"))


def test_valid_role_arn_is_accepted_and_shown(db, reset_variables):
    arn = "arn:aws:iam::123456789012:role/sqlml-ml"
    db.query(f"SET GLOBAL aws_default_sagemaker_role = '{arn}'")
    assert variables(db, "aws_default_sagemaker_role") == {"aws_default_sagemaker_role": arn}
    assert db.status()["settings"]["sagemaker_role_arn"] == arn


def test_set_global_from_many_connections_at_once_is_safe(db, fake, reset_variables):
    """Concurrent SET GLOBAL and ML calls: every call answers, the last value wins."""
    stop = threading.Event()
    errors = []

    def setter(i):
        with db.connect() as conn, conn.cursor() as cur:
            for j in range(60):
                cur.execute(f"SET GLOBAL sqlml_region = 'us-west-{(i + j) % 3}'")
                cur.execute("SET GLOBAL sqlml_cache_max_entries = %s", (1000 + j,))

    def caller():
        with db.connect() as conn:
            while not stop.is_set():
                try:
                    db.query("SELECT aws_sagemaker_invoke_endpoint_real('echo-race', 'REAL', 1, n) "
                             "FROM numbers WHERE n <= 5", conn=conn)
                except pymysql.MySQLError as exc:  # pragma: no cover - reported below
                    errors.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(2)]
    for t in threads:
        t.start()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        list(pool.map(setter, range(3)))
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    db.query("SET GLOBAL sqlml_region = 'eu-west-1'")
    assert db.status()["settings"]["region"] == "eu-west-1"


def test_server_options_at_start_set_the_variables(db, fake):
    """my.cnf / command-line values (--loose-sqlml-*) apply from the start and win over sqlml.cnf."""
    server = db.server
    original = list(server.extra_args)
    try:
        server.restart(extra_args=original + [
            "--loose-sqlml-on-error=null", "--loose-aurora-ml-inference-timeout=2500",
            "--loose-aws-default-comprehend-role=arn:aws:iam::123456789012:role/from-cnf"])
        assert variables(db, "sqlml_on_error") == {"sqlml_on_error": "null"}
        settings = db.status()["settings"]
        assert (settings["on_error"], settings["timeout_s"], settings["comprehend_role_arn"]) == \
            ("null", 2.5, "arn:aws:iam::123456789012:role/from-cnf")
        assert status(db)["Aurora_ml_logical_request_cnt"] == 0
    finally:
        server.restart(extra_args=original)
    assert db.status()["settings"]["on_error"] == "error"


def test_plugin_uninstall_and_install_under_load_never_crashes(db, fake):
    """UNINSTALL/INSTALL PLUGIN while other connections call the functions, read the
    status and set variables: every call answers or fails cleanly, the server lives."""
    stop = threading.Event()
    outcomes = {"ok": 0, "refused": 0}
    unexpected = []

    def caller():
        # A fresh session per call: MySQL unloads an audit plugin only once every
        # session that used it has gone.
        while not stop.is_set():
            try:
                rows = db.query("SELECT aws_sagemaker_invoke_endpoint_real('echo-cycle', 'REAL', 1, n) "
                                "FROM numbers WHERE n <= 3")
                assert sorted(r[0] for r in rows) == [1.0, 2.0, 3.0]
                outcomes["ok"] += 1
                status(db)
            except pymysql.MySQLError as exc:
                # MySQL refuses (fail closed) while the privilege plugin is away.
                if exc.args[0] == 1227:
                    outcomes["refused"] += 1
                else:
                    unexpected.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(8):
            for plugin in ("aurora_ml", "aws", "sqlml"):
                db.uninstall_plugin(plugin)
            for plugin in ("sqlml", "aws", "aurora_ml"):
                db.install_plugin(plugin)
            db.query("SET GLOBAL sqlml_max_attempts = 4")
            db.query("SET GLOBAL sqlml_max_attempts = DEFAULT")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert db.server.is_alive()
    assert unexpected == []
    assert outcomes["ok"] > 0
    assert db.scalar("SELECT aws_sagemaker_invoke_endpoint_real('echo-cycle', 'REAL', 1, 9)") == 9.0
    assert set(AURORA) <= set(status(db))
