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
CREATE FUNCTION aws_sagemaker_invoke_endpoint_decimal RETURNS STRING SONAME 'sqlml.so';
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

-- The plugin part of the same library, three plugins: sqlml (system variables sqlml_*;
-- on MySQL the dynamic privileges SQLML_COMPREHEND_INVOKE, SQLML_SAGEMAKER_INVOKE,
-- SQLML_S3_EXPORT), aws (aws_default_*_role) and aurora_ml (SHOW GLOBAL STATUS LIKE
-- 'Aurora_ml%' and 'Sqlml%', and aurora_ml_inference_timeout).
SET @sqlml_sql = (SELECT IF(COUNT(*) = 0, 'INSTALL PLUGIN sqlml SONAME ''sqlml.so''', 'DO 0')
                  FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'sqlml');
PREPARE sqlml_stmt FROM @sqlml_sql;
EXECUTE sqlml_stmt;
SET @sqlml_sql = (SELECT IF(COUNT(*) = 0, 'INSTALL PLUGIN aws SONAME ''sqlml.so''', 'DO 0')
                  FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'aws');
PREPARE sqlml_stmt FROM @sqlml_sql;
EXECUTE sqlml_stmt;
SET @sqlml_sql = (SELECT IF(COUNT(*) = 0, 'INSTALL PLUGIN aurora_ml SONAME ''sqlml.so''', 'DO 0')
                  FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'aurora_ml');
PREPARE sqlml_stmt FROM @sqlml_sql;
EXECUTE sqlml_stmt;

-- Access control (python/sqlml/access.py). A user may call the Comprehend functions
-- only with AWS_COMPREHEND_ACCESS active, the SageMaker ones only with
-- AWS_SAGEMAKER_ACCESS active, and export to S3 only with AWS_SELECT_S3_ACCESS active.
-- Each role carries one privilege: on MySQL a dynamic privilege, on MariaDB (which has
-- none) EXECUTE on a marker procedure in the `sqlml` schema, named after it.
CREATE ROLE IF NOT EXISTS AWS_COMPREHEND_ACCESS;
CREATE ROLE IF NOT EXISTS AWS_SAGEMAKER_ACCESS;
CREATE ROLE IF NOT EXISTS AWS_SELECT_S3_ACCESS;
CREATE DATABASE IF NOT EXISTS sqlml;
CREATE PROCEDURE IF NOT EXISTS sqlml.comprehend_invoke() COMMENT 'sqlml access marker (MariaDB): EXECUTE on it = may call Comprehend' SELECT 'AWS_COMPREHEND_ACCESS';
CREATE PROCEDURE IF NOT EXISTS sqlml.sagemaker_invoke() COMMENT 'sqlml access marker (MariaDB): EXECUTE on it = may call SageMaker' SELECT 'AWS_SAGEMAKER_ACCESS';
CREATE PROCEDURE IF NOT EXISTS sqlml.s3_export() COMMENT 'sqlml access marker (MariaDB): EXECUTE on it = may export to S3' SELECT 'AWS_SELECT_S3_ACCESS';
SET @sqlml_mariadb = VERSION() LIKE '%MariaDB%';
SET @sqlml_sql = IF(@sqlml_mariadb, 'GRANT EXECUTE ON PROCEDURE sqlml.comprehend_invoke TO AWS_COMPREHEND_ACCESS',
                    'GRANT SQLML_COMPREHEND_INVOKE ON *.* TO AWS_COMPREHEND_ACCESS');
PREPARE sqlml_stmt FROM @sqlml_sql;
EXECUTE sqlml_stmt;
SET @sqlml_sql = IF(@sqlml_mariadb, 'GRANT EXECUTE ON PROCEDURE sqlml.sagemaker_invoke TO AWS_SAGEMAKER_ACCESS',
                    'GRANT SQLML_SAGEMAKER_INVOKE ON *.* TO AWS_SAGEMAKER_ACCESS');
PREPARE sqlml_stmt FROM @sqlml_sql;
EXECUTE sqlml_stmt;
SET @sqlml_sql = IF(@sqlml_mariadb, 'GRANT EXECUTE ON PROCEDURE sqlml.s3_export TO AWS_SELECT_S3_ACCESS',
                    'GRANT SQLML_S3_EXPORT ON *.* TO AWS_SELECT_S3_ACCESS');
PREPARE sqlml_stmt FROM @sqlml_sql;
EXECUTE sqlml_stmt;
-- The installing administrator may call everything, by a direct grant: no one holds
-- these implicitly (on MariaDB only a grant on the marker procedure itself counts, not
-- a global or database-level EXECUTE).
SET @sqlml_sql = IF(@sqlml_mariadb, 'GRANT EXECUTE ON PROCEDURE sqlml.comprehend_invoke TO CURRENT_USER()',
                    'GRANT SQLML_COMPREHEND_INVOKE, SQLML_SAGEMAKER_INVOKE, SQLML_S3_EXPORT ON *.* TO CURRENT_USER()');
PREPARE sqlml_stmt FROM @sqlml_sql;
EXECUTE sqlml_stmt;
SET @sqlml_sql = IF(@sqlml_mariadb, 'GRANT EXECUTE ON PROCEDURE sqlml.sagemaker_invoke TO CURRENT_USER()', 'DO 0');
PREPARE sqlml_stmt FROM @sqlml_sql;
EXECUTE sqlml_stmt;
SET @sqlml_sql = IF(@sqlml_mariadb, 'GRANT EXECUTE ON PROCEDURE sqlml.s3_export TO CURRENT_USER()', 'DO 0');
PREPARE sqlml_stmt FROM @sqlml_sql;
EXECUTE sqlml_stmt;
DEALLOCATE PREPARE sqlml_stmt;

-- No benchmark or diagnostic function is installed for everyone: bench/bench_rewrite.py
-- creates sqlml_rewrite_filter_ns itself and drops it after. Earlier versions installed
-- it: remove it.
DROP FUNCTION IF EXISTS sqlml_rewrite_filter_ns;

-- Training-data export to S3 (Aurora's SELECT INTO OUTFILE S3): an aggregate over a query.
DROP FUNCTION IF EXISTS sqlml_export_s3;
CREATE AGGREGATE FUNCTION sqlml_export_s3 RETURNS STRING SONAME 'sqlml.so';
