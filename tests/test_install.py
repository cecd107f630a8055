"""Installing sqlml into a real server: idempotent scripts and the version function."""

import platform

import boto3

from sqlml import __version__, installer

FUNCTIONS = {
    "aws_comprehend_detect_sentiment", "aws_comprehend_detect_sentiment_confidence",
    "aws_sagemaker_invoke_endpoint_real", "aws_sagemaker_invoke_endpoint_int",
    "aws_sagemaker_invoke_endpoint_decimal", "aws_sagemaker_invoke_endpoint_string",
    "sqlml_version", "sqlml_status", "sqlml_echo_int", "sqlml_noop_int",
    "sqlml_warm_comprehend", "sqlml_warm_sagemaker", "sqlml_cache_clear",
    "sqlml_export_s3",
}


def udfs(db) -> set[str]:
    return {name for (name,) in db.query("SELECT name FROM mysql.func WHERE dl = 'sqlml.so'")}


def test_version_reports_library_engine_and_python(db):
    text = db.scalar("SELECT sqlml_version()")
    assert f"sqlml {__version__}" in text
    assert f"library {__version__}" in text and f"engine {__version__}" in text
    assert f"Python {platform.python_version()}" in text
    assert f"boto3 {boto3.__version__}" in text
    # Every leg `make test` runs is one sqlml.support.TESTED lists: a new leg must be added there.
    assert f"server {db.flavor} {db.server.version}, tested" in text, text


def test_install_and_uninstall_are_idempotent(db):
    assert udfs(db) == FUNCTIONS
    with db.connect(database="mysql") as conn:
        installer.install(conn, db.base_settings, log=lambda *_: None)
        installer.install(conn, db.base_settings, log=lambda *_: None)
        assert udfs(db) == FUNCTIONS
        installer.uninstall(conn, log=lambda *_: None)
        installer.uninstall(conn, log=lambda *_: None)
        assert udfs(db) == set()
    # MySQL unloads an audit plugin once every session that used it has ended.
    for plugin in installer.PLUGINS:
        db.wait_plugin_gone(plugin)
    with db.connect(database="mysql") as conn:
        installer.install(conn, db.base_settings, log=lambda *_: None)
    assert udfs(db) == FUNCTIONS
    assert installer.plugin_states(db.connect(database="mysql")) == dict.fromkeys(installer.PLUGINS, "ACTIVE")
    assert db.scalar("SELECT sqlml_echo_int(7)") == 7


def test_install_writes_cnf_naming_this_venv(db):
    text = db.cnf_path.read_text()
    assert "python = " in text and "/bin/python" in text
    assert f"comprehend_endpoint_url = {db.fake.url}" in text


def test_bad_setting_is_refused_before_anything_is_written(db):
    import pytest

    from sqlml.config import SettingError

    before = db.cnf_path.read_text()
    with pytest.raises(SettingError, match="on_error must be one of error, null"):
        installer.cnf_text({"on_error": "ignore"}, "/x/bin/python")
    with pytest.raises(SettingError, match="unknown setting"):
        installer.cnf_text({"timeout": "3"}, "/x/bin/python")
    assert db.cnf_path.read_text() == before
