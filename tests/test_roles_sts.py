"""aws_default_*_role: the engine assumes the IAM role with STS and signs with its keys.

Against a fake STS on 127.0.0.1: the service requests are signed with the assumed
role's temporary keys (the fake AWS logs each request's access key), credentials are
refreshed before they expire, a refused AssumeRole is a clear error that sends
nothing, and no secret appears in an error message.
"""

import pymysql
import pytest

from tests.doubles.fakeaws.sts import SECRET_PREFIX, FakeSTS

ROLE = "arn:aws:iam::123456789012:role/sqlml-sagemaker"


@pytest.fixture
def sts(db):
    with FakeSTS() as fake_sts:
        db.query(f"SET GLOBAL sqlml_sts_endpoint_url = '{fake_sts.url}'")
        yield fake_sts
    with db.connect() as conn, conn.cursor() as cur:
        for name in ("sqlml_sts_endpoint_url", "aws_default_sagemaker_role", "aws_default_comprehend_role"):
            cur.execute(f"SET GLOBAL {name} = DEFAULT")


def keys_used(fake, service):
    return [e["access_key"] for e in fake.stats()["log"] if e["service"] == service]


def test_requests_are_signed_with_the_assumed_roles_keys(db, fake, sts):
    db.query(f"SET GLOBAL aws_default_sagemaker_role = '{ROLE}'")
    assert db.scalar("SELECT aws_sagemaker_invoke_endpoint_real('echo-role', 'REAL', 1, 5)") == 5.0
    assert db.scalar("SELECT aws_sagemaker_invoke_endpoint_real('echo-role', 'REAL', 1, 6)") == 6.0
    assert [c["role"] for c in sts.calls] == [ROLE]  # assumed once, reused while valid
    assert sts.calls[0]["caller"] == "testing"       # with the server's own (default chain) keys
    assert sts.calls[0]["session"] == "sqlml"
    assert keys_used(fake, "sagemaker") == ["ASIAFAKE1", "ASIAFAKE1"]
    # Comprehend has no role configured: default credentials.
    db.query("SELECT aws_comprehend_detect_sentiment('fine', 'en')")
    assert keys_used(fake, "comprehend") == ["testing"]


def test_credentials_are_refreshed_before_they_expire(db, fake, sts):
    sts.expires_in = 120  # inside botocore's refresh window: every use renews them
    db.query(f"SET GLOBAL aws_default_comprehend_role = '{ROLE}'")
    db.query("SELECT aws_comprehend_detect_sentiment('one', 'en')")
    db.query("SELECT aws_comprehend_detect_sentiment('two', 'en')")
    assert len(sts.calls) >= 2
    used = keys_used(fake, "comprehend")
    assert used[0] == "ASIAFAKE1" and used[-1] != "ASIAFAKE1" and used[-1].startswith("ASIAFAKE")


def test_a_refused_assume_role_is_a_clear_error_without_secrets(db, fake, sts):
    sts.deny.add(ROLE)
    db.query(f"SET GLOBAL aws_default_sagemaker_role = '{ROLE}'")
    with pytest.raises(pymysql.MySQLError) as err:
        db.query("SELECT aws_sagemaker_invoke_endpoint_real('echo-role', 'REAL', 1, 5)")
    message = err.value.args[1]
    assert "AssumeRole" in message and "AccessDenied" in message, message
    assert SECRET_PREFIX not in message and "fake-token" not in message
    assert keys_used(fake, "sagemaker") == []
    # The DBA fixes the role: the next statement works.
    sts.deny.clear()
    assert db.scalar("SELECT aws_sagemaker_invoke_endpoint_real('echo-role', 'REAL', 1, 5)") == 5.0
    log = db.server.error_log.read_text(errors="replace")
    assert SECRET_PREFIX not in log and "fake-token" not in log
