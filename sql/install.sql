-- sqlml: install the SQL functions of sqlml.so. Idempotent: run it again to upgrade.
-- `sqlml install` copies sqlml.so and sqlml.cnf into the server's plugin_dir first.
-- Statements are separated by ';' at line ends; no DELIMITER is needed.

DROP FUNCTION IF EXISTS aws_comprehend_detect_sentiment;
CREATE FUNCTION aws_comprehend_detect_sentiment RETURNS STRING SONAME 'sqlml.so';
DROP FUNCTION IF EXISTS aws_comprehend_detect_sentiment_confidence;
CREATE FUNCTION aws_comprehend_detect_sentiment_confidence RETURNS REAL SONAME 'sqlml.so';

DROP FUNCTION IF EXISTS aws_sagemaker_invoke_endpoint_real;
CREATE FUNCTION aws_sagemaker_invoke_endpoint_real RETURNS REAL SONAME 'sqlml.so';
DROP FUNCTION IF EXISTS aws_sagemaker_invoke_endpoint_int;
CREATE FUNCTION aws_sagemaker_invoke_endpoint_int RETURNS INTEGER SONAME 'sqlml.so';
DROP FUNCTION IF EXISTS aws_sagemaker_invoke_endpoint_decimal;
CREATE FUNCTION aws_sagemaker_invoke_endpoint_decimal RETURNS DECIMAL SONAME 'sqlml.so';
DROP FUNCTION IF EXISTS aws_sagemaker_invoke_endpoint_string;
CREATE FUNCTION aws_sagemaker_invoke_endpoint_string RETURNS STRING SONAME 'sqlml.so';

DROP FUNCTION IF EXISTS sqlml_version;
CREATE FUNCTION sqlml_version RETURNS STRING SONAME 'sqlml.so';
DROP FUNCTION IF EXISTS sqlml_status;
CREATE FUNCTION sqlml_status RETURNS STRING SONAME 'sqlml.so';

-- Diagnostics used by the benchmarks (the Python crossing, and a pure-C baseline).
DROP FUNCTION IF EXISTS sqlml_echo_int;
CREATE FUNCTION sqlml_echo_int RETURNS INTEGER SONAME 'sqlml.so';
DROP FUNCTION IF EXISTS sqlml_noop_int;
CREATE FUNCTION sqlml_noop_int RETURNS INTEGER SONAME 'sqlml.so';

-- The batch path: warm-up aggregates that send a query's inputs in batches into the
-- result cache, and a way to empty that cache.
DROP FUNCTION IF EXISTS sqlml_warm_comprehend;
CREATE AGGREGATE FUNCTION sqlml_warm_comprehend RETURNS INTEGER SONAME 'sqlml.so';
DROP FUNCTION IF EXISTS sqlml_warm_sagemaker;
CREATE AGGREGATE FUNCTION sqlml_warm_sagemaker RETURNS INTEGER SONAME 'sqlml.so';
DROP FUNCTION IF EXISTS sqlml_cache_clear;
CREATE FUNCTION sqlml_cache_clear RETURNS INTEGER SONAME 'sqlml.so';

-- Training-data export to S3 (Aurora's SELECT INTO OUTFILE S3): an aggregate over a query.
DROP FUNCTION IF EXISTS sqlml_export_s3;
CREATE AGGREGATE FUNCTION sqlml_export_s3 RETURNS STRING SONAME 'sqlml.so';
