-- sqlml: remove what install.sql made: the SQL functions of sqlml.so, its plugins,
-- the roles AWS_*_ACCESS (and so every grant of them) and the `sqlml` schema of access
-- markers. Idempotent. Stored functions made with `sqlml translate` stay, and fail
-- until sqlml is installed again.

DROP FUNCTION IF EXISTS aws_comprehend_detect_sentiment;
DROP FUNCTION IF EXISTS aws_comprehend_detect_sentiment_confidence;
DROP FUNCTION IF EXISTS aws_sagemaker_invoke_endpoint_real;
DROP FUNCTION IF EXISTS aws_sagemaker_invoke_endpoint_int;
DROP FUNCTION IF EXISTS aws_sagemaker_invoke_endpoint_decimal;
DROP FUNCTION IF EXISTS aws_sagemaker_invoke_endpoint_string;
DROP FUNCTION IF EXISTS sqlml_version;
DROP FUNCTION IF EXISTS sqlml_status;
DROP FUNCTION IF EXISTS sqlml_echo_int;
DROP FUNCTION IF EXISTS sqlml_noop_int;
DROP FUNCTION IF EXISTS sqlml_warm_comprehend;
DROP FUNCTION IF EXISTS sqlml_warm_sagemaker;
DROP FUNCTION IF EXISTS sqlml_cache_clear;
SET @sqlml_sql = (SELECT IF(COUNT(*) = 0, 'DO 0', 'UNINSTALL PLUGIN sqlml')
                  FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'sqlml');
PREPARE sqlml_stmt FROM @sqlml_sql;
EXECUTE sqlml_stmt;
SET @sqlml_sql = (SELECT IF(COUNT(*) = 0, 'DO 0', 'UNINSTALL PLUGIN aws')
                  FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'aws');
PREPARE sqlml_stmt FROM @sqlml_sql;
EXECUTE sqlml_stmt;
SET @sqlml_sql = (SELECT IF(COUNT(*) = 0, 'DO 0', 'UNINSTALL PLUGIN aurora_ml')
                  FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'aurora_ml');
PREPARE sqlml_stmt FROM @sqlml_sql;
EXECUTE sqlml_stmt;
DEALLOCATE PREPARE sqlml_stmt;
DROP ROLE IF EXISTS AWS_COMPREHEND_ACCESS;
DROP ROLE IF EXISTS AWS_SAGEMAKER_ACCESS;
DROP ROLE IF EXISTS AWS_SELECT_S3_ACCESS;
DROP DATABASE IF EXISTS sqlml;
DROP FUNCTION IF EXISTS sqlml_rewrite_filter_ns;
DROP FUNCTION IF EXISTS sqlml_export_s3;
