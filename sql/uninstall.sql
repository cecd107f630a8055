-- sqlml: remove the SQL functions of sqlml.so. Idempotent. Stored functions made
-- with `sqlml translate` stay, and fail until sqlml is installed again.

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
DROP FUNCTION IF EXISTS sqlml_export_s3;
