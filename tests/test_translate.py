"""sqlml translate: Aurora's SageMaker DDL -> a stored function over the typed UDFs."""

import pytest

from sqlml.translate import TranslateError, parse, translate


def test_seed_example_translates_to_wrapper_with_same_name_args_and_type():
    sql = translate(
        "CREATE FUNCTION anomaly_score(value REAL) RETURNS REAL\n"
        "  ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT ENDPOINT NAME 'random-cut-forest-model-demo';"
    )
    assert sql == (
        "CREATE FUNCTION anomaly_score(value REAL) RETURNS REAL\n"
        "  NOT DETERMINISTIC NO SQL SQL SECURITY DEFINER\n"
        "  RETURN aws_sagemaker_invoke_endpoint_real('random-cut-forest-model-demo', 'REAL', 10000, value)"
    )


def test_any_case_spacing_definer_security_and_batch_size():
    fn = parse(
        "create   definer = `admin`@`%` function `churn`(a int, b decimal(10, 2), c varchar(20) charset latin1)\n"
        "returns varchar(10) sql security invoker alias aws_sagemaker_invoke_endpoint\n"
        "endpoint name 'churn-ep' max_batch_size 500"
    )
    assert fn.name == "`churn`"
    assert [(p.name, p.sql_type) for p in fn.params] == [
        ("a", "int"), ("b", "decimal(10, 2)"), ("c", "varchar(20) charset latin1")]
    assert (fn.returns, fn.security, fn.endpoint, fn.max_batch_size) == ("varchar(10)", "INVOKER", "churn-ep", 500)
    assert fn.definer == "`admin`@`%`"
    sql = translate(
        "CREATE FUNCTION churn(a INT, c VARCHAR(20)) RETURNS VARCHAR(10) ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT "
        "ENDPOINT NAME 'churn-ep'"
    )
    assert "RETURNS VARCHAR(10) CHARSET utf8mb4" in sql
    assert "aws_sagemaker_invoke_endpoint_string('churn-ep', 'VARCHAR(10)', 10000, a, CONVERT(c USING utf8mb4))" in sql


@pytest.mark.parametrize("returns, udf", [("INTEGER", "int"), ("BIGINT UNSIGNED", "int"), ("DOUBLE", "real"),
                                          ("DECIMAL(12,4)", "decimal")])
def test_return_type_picks_the_typed_udf(returns, udf):
    sql = translate(f"CREATE FUNCTION f(x INT) RETURNS {returns} ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT "
                    f"ENDPOINT NAME 'ep'")
    assert f"RETURN aws_sagemaker_invoke_endpoint_{udf}('ep'," in sql


@pytest.mark.parametrize("ddl, message", [
    ("CREATE FUNCTION f(x INT) RETURNS REAL", "RETURNS"),
    ("CREATE FUNCTION f(x INT) RETURNS REAL ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT ENDPOINT NAME 'e' MAX_BATCH_SIZE 0",
     "MAX_BATCH_SIZE"),
    ("CREATE FUNCTION f(x INT) RETURNS BLOB ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT ENDPOINT NAME 'e'", "return type"),
    ("CREATE FUNCTION f(x INT) RETURNS REAL DETERMINISTIC ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT ENDPOINT NAME 'e'",
     "DETERMINISTIC"),
    ("CREATE FUNCTION f() RETURNS REAL ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT ENDPOINT NAME 'e'", "at least one"),
    ("CREATE FUNCTION f(x INT) RETURNS REAL ALIAS AWS_COMPREHEND ENDPOINT NAME 'e'", "AWS_SAGEMAKER_INVOKE_ENDPOINT"),
])
def test_bad_ddl_is_refused_with_what_is_wrong(ddl, message):
    with pytest.raises(TranslateError) as err:
        translate(ddl)
    assert message in err.value.sql_message


def test_quotes_in_endpoint_and_comment_are_escaped():
    sql = translate("CREATE FUNCTION f(x INT) RETURNS REAL COMMENT 'it''s' ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT "
                    "ENDPOINT NAME 'ep'")
    assert "COMMENT 'it''s'" in sql


@pytest.mark.parametrize("name", ["f", "db.f", "`db`.`f`", "db.`f`", "`db`.f", "`d b`.`f``x`"])
def test_a_database_qualified_name_is_kept_as_written(name):
    fn = parse(f"CREATE FUNCTION {name}(x INT) RETURNS REAL ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT ENDPOINT NAME 'ep'")
    assert fn.name == name
    assert translate(f"CREATE FUNCTION {name} (x INT) RETURNS REAL ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT "
                     f"ENDPOINT NAME 'ep'").startswith(f"CREATE FUNCTION {name}(x INT) RETURNS REAL\n")


@pytest.mark.parametrize("name", ["`db`.", "`db`.("])
def test_a_cut_qualified_name_is_refused(name):
    with pytest.raises(TranslateError):
        parse(f"CREATE FUNCTION {name}(x INT) RETURNS REAL ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT ENDPOINT NAME 'ep'")
