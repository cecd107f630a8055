"""AWS_COMPREHEND_ACCESS / AWS_SAGEMAKER_ACCESS: enforced by sqlml, fail closed.

A stock server checks no privilege before calling a loadable function; these tests
prove sqlml asks the server's own privilege system, with roles as the session has
them active, and that a refused call sends nothing.
"""

import pymysql
import pytest

PASSWORD = "pw-sqlml-test"
SENTIMENT = "SELECT aws_comprehend_detect_sentiment('I love it', 'en')"
INVOKE = "SELECT aws_sagemaker_invoke_endpoint_real('echo-acl', 'REAL', 1, 42)"


@pytest.fixture
def user(db):
    """A fresh user with nothing but SELECT on the test schema."""
    name = "ml_user"
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP USER IF EXISTS '{name}'@'%'")
        cur.execute(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{PASSWORD}'")
        cur.execute(f"GRANT SELECT ON sqlml_test.* TO '{name}'@'%'")
    yield name
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP USER IF EXISTS '{name}'@'%'")
        cur.execute("DROP FUNCTION IF EXISTS sqlml_test.definer_sentiment")
        cur.execute("DROP FUNCTION IF EXISTS sqlml_test.invoker_sentiment")


def connect_as(db, name):
    return db.connect(user=name, password=PASSWORD)


def direct_sagemaker_grant(db, user, revoke=False):
    """GRANTs (or REVOKEs) what AWS_SAGEMAKER_ACCESS carries, directly: MySQL's dynamic
    privilege, MariaDB's EXECUTE on the marker procedure."""
    what = ("SQLML_SAGEMAKER_INVOKE ON *.*" if db.kind == "mysql"
            else "EXECUTE ON PROCEDURE sqlml.sagemaker_invoke")
    with db.connect() as admin, admin.cursor() as cur:
        cur.execute(f"REVOKE {what} FROM '{user}'@'%'" if revoke else f"GRANT {what} TO '{user}'@'%'")


def denied(db, conn, sql):
    """The error of a refused call; asserts it is an access-denied error."""
    with pytest.raises(pymysql.MySQLError) as err:
        db.query(sql, conn=conn)
    code, message = err.value.args
    assert code == 1227, err.value.args
    assert "access denied" in message
    return message


def test_an_unprivileged_user_is_refused_and_nothing_is_sent(db, fake, user):
    with connect_as(db, user) as conn:
        message = denied(db, conn, SENTIMENT)
        assert "AWS_COMPREHEND_ACCESS" in message
        message = denied(db, conn, INVOKE)
        assert "AWS_SAGEMAKER_ACCESS" in message
        denied(db, conn, "SELECT sqlml_warm_comprehend(CONCAT('t', n), 'en') FROM numbers WHERE n <= 3")
        denied(db, conn, "SELECT sqlml_warm_sagemaker('echo-acl', 10, n) FROM numbers WHERE n <= 3")
        denied(db, conn, "SELECT sqlml_cache_clear()")
        # Anyone may look at the version and the status.
        assert db.query("SELECT sqlml_version()", conn=conn)[0][0].startswith("sqlml ")
    assert fake.stats(log=False)["requests"] == 0


def test_role_lifecycle_granted_active_revoked(db, fake, user):
    with db.connect() as admin, admin.cursor() as cur:
        cur.execute(f"GRANT AWS_COMPREHEND_ACCESS TO '{user}'@'%'")
    with connect_as(db, user) as conn:
        # Granted but not active: still refused.
        denied(db, conn, SENTIMENT)
        db.query("SET ROLE AWS_COMPREHEND_ACCESS", conn=conn)
        assert db.query(SENTIMENT, conn=conn) == [("POSITIVE",)]
        # One role does not open the other service.
        assert "AWS_SAGEMAKER_ACCESS" in denied(db, conn, INVOKE)
        # Revoked from another connection. MySQL: refused from the next statement on.
        # MariaDB keeps an active role's privileges (every privilege, not only ours) until
        # the session's next SET ROLE or login.
        with db.connect() as admin, admin.cursor() as cur:
            cur.execute(f"REVOKE AWS_COMPREHEND_ACCESS FROM '{user}'@'%'")
        if db.kind == "mysql":
            denied(db, conn, SENTIMENT)
        else:
            with pytest.raises(pymysql.MySQLError):
                db.query("SET ROLE AWS_COMPREHEND_ACCESS", conn=conn)  # no longer granted
    with connect_as(db, user) as conn:
        denied(db, conn, SENTIMENT)
        with pytest.raises(pymysql.MySQLError):
            db.query("SET ROLE AWS_COMPREHEND_ACCESS", conn=conn)
        denied(db, conn, SENTIMENT)
    assert fake.stats(log=False)["by_service"].get("sagemaker", 0) == 0


def test_default_role_is_active_at_login(db, fake, user):
    with db.connect() as admin, admin.cursor() as cur:
        cur.execute(f"GRANT AWS_SAGEMAKER_ACCESS TO '{user}'@'%'")
        if db.kind == "mysql":
            cur.execute(f"ALTER USER '{user}'@'%' DEFAULT ROLE AWS_SAGEMAKER_ACCESS")
        else:
            cur.execute(f"SET DEFAULT ROLE AWS_SAGEMAKER_ACCESS FOR '{user}'@'%'")
    with connect_as(db, user) as conn:
        assert db.query(INVOKE, conn=conn) == [(42.0,)]
        db.query("SET ROLE NONE", conn=conn)
        denied(db, conn, INVOKE)


@pytest.mark.server("mysql")  # MariaDB has no activate_all_roles_on_login: one role at a time
def test_mysql_activate_all_roles_on_login(db, fake, user):
    with db.connect() as admin, admin.cursor() as cur:
        cur.execute(f"GRANT AWS_COMPREHEND_ACCESS TO '{user}'@'%'")
        cur.execute("SET GLOBAL activate_all_roles_on_login = ON")
    try:
        with connect_as(db, user) as conn:
            assert db.query(SENTIMENT, conn=conn) == [("POSITIVE",)]
    finally:
        db.query("SET GLOBAL activate_all_roles_on_login = OFF")


def test_direct_privilege_grant_works_too(db, fake, user):
    """What the role carries, granted directly (documented for automation)."""
    direct_sagemaker_grant(db, user)
    with connect_as(db, user) as conn:
        assert db.query(INVOKE, conn=conn) == [(42.0,)]
        denied(db, conn, SENTIMENT)


def test_definer_and_invoker_wrappers_follow_the_servers_rules(db, fake, user):
    """SQL SECURITY DEFINER runs with the definer's rights (root may call Comprehend);
    SQL SECURITY INVOKER with the caller's (the user may not)."""
    with db.connect() as admin, admin.cursor() as cur:
        for security in ("DEFINER", "INVOKER"):
            cur.execute(f"DROP FUNCTION IF EXISTS sqlml_test.{security.lower()}_sentiment")
            cur.execute(f"CREATE FUNCTION sqlml_test.{security.lower()}_sentiment(t TEXT) "
                        f"RETURNS VARCHAR(20) CHARSET utf8mb4 NOT DETERMINISTIC NO SQL SQL SECURITY {security} "
                        f"RETURN aws_comprehend_detect_sentiment(t, 'en')")
            cur.execute(f"GRANT EXECUTE ON FUNCTION sqlml_test.{security.lower()}_sentiment TO '{user}'@'%'")
    with connect_as(db, user) as conn:
        assert db.query("SELECT sqlml_test.definer_sentiment('I love it')", conn=conn) == [("POSITIVE",)]
        denied(db, conn, "SELECT sqlml_test.invoker_sentiment('I love it')")
    with db.connect() as admin, admin.cursor() as cur:
        cur.execute(f"GRANT AWS_COMPREHEND_ACCESS TO '{user}'@'%'")
    with connect_as(db, user) as conn:
        db.query("SET ROLE AWS_COMPREHEND_ACCESS", conn=conn)
        assert db.query("SELECT sqlml_test.invoker_sentiment('I love it')", conn=conn) == [("POSITIVE",)]


def test_denials_are_counted(db, fake, user):
    before = int(db.query("SHOW GLOBAL STATUS LIKE 'Sqlml_access_denied_cnt'")[0][1])
    with connect_as(db, user) as conn:
        denied(db, conn, SENTIMENT)
    after = int(db.query("SHOW GLOBAL STATUS LIKE 'Sqlml_access_denied_cnt'")[0][1])
    assert after == before + 1


def test_without_the_plugin_access_stays_closed(db, fake, user):
    """Fail closed. MySQL: with the sqlml plugin uninstalled the privilege cannot be
    checked, so even root is refused, and told why. MariaDB: the check does not need the
    plugin (it asks the server's routine ACL), so roles still apply."""
    db.uninstall_plugin("sqlml")
    try:
        with connect_as(db, user) as conn:
            denied(db, conn, SENTIMENT)
        if db.kind == "mysql":
            with pytest.raises(pymysql.MySQLError) as err:
                db.query(SENTIMENT)
            assert err.value.args[0] == 1227
            assert "plugin is not installed" in err.value.args[1]
        else:
            assert db.query(SENTIMENT) == [("POSITIVE",)]
    finally:
        db.install_plugin("sqlml")
    assert db.query(SENTIMENT) == [("POSITIVE",)]


def test_binlog_format_statement_is_refused(db, fake):
    """ML answers are not deterministic: statement-based replication would diverge."""
    server = db.server
    server.restart(log_bin=True)  # the test servers run without a binary log
    try:
        with db.connect() as conn:
            db.query("SET SESSION binlog_format = 'STATEMENT'", conn=conn)
            with pytest.raises(pymysql.MySQLError) as err:
                db.query(SENTIMENT, conn=conn)
            assert err.value.args[0] == 1592
            assert "binlog_format=STATEMENT" in err.value.args[1]
            assert fake.stats(log=False)["requests"] == 0
            db.query("SET SESSION binlog_format = 'ROW'", conn=conn)
            assert db.query(SENTIMENT, conn=conn) == [("POSITIVE",)]
            db.query("SET SESSION binlog_format = 'MIXED'", conn=conn)
            assert db.query(SENTIMENT, conn=conn) == [("POSITIVE",)]
    finally:
        server.restart(log_bin=False)
