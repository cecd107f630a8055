"""The seed's queries as Aurora users write them, and their batch-path variants.

Shared by `make demo` (demo/__main__.py) and the seed script for the Docker images
(demo/seed.py), so both run the very same SQL.
"""

ANOMALY_DDL = ("CREATE FUNCTION anomaly_score(value REAL) RETURNS REAL "
               "ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT ENDPOINT NAME 'random-cut-forest-model-demo'")
SENTIMENT_SQL = """SELECT product_id,
       AVG(CASE aws_comprehend_detect_sentiment(review, 'en')
           WHEN 'POSITIVE' THEN 1.0 WHEN 'NEGATIVE' THEN -1.0 ELSE 0.0 END) AS avg_sentiment,
       COUNT(*) AS confident_reviews
FROM product_reviews
WHERE aws_comprehend_detect_sentiment_confidence(review, 'en') >= 0.6
GROUP BY product_id ORDER BY product_id"""
CUTOFF_SQL = ("SET @score_cutoff = (SELECT AVG(anomaly_score(value)) + 3 * STD(anomaly_score(value)) "
              "FROM nyc_taxi)")
ANOMALY_SQL = ("SELECT ts, value, ROUND(anomaly_score(value), 3) AS score FROM nyc_taxi "
               "WHERE anomaly_score(value) > @score_cutoff ORDER BY ts")
# The same two queries on the batch path: a warm-up aggregate over the same FROM/WHERE
# sends every distinct input first, in batches; each row then reads its own answer.
WARM_TAXI = "(SELECT sqlml_warm_sagemaker('random-cut-forest-model-demo', 10000, value) FROM nyc_taxi) >= 0"
BATCHED_CUTOFF_SQL = ("SET @score_cutoff = (SELECT AVG(s) + 3 * STD(s) FROM "
                      f"(SELECT anomaly_score(value) AS s FROM nyc_taxi WHERE {WARM_TAXI}) AS scored)")
BATCHED_ANOMALY_SQL = ("SELECT ts, value, ROUND(anomaly_score(value), 3) AS score FROM nyc_taxi "
                       f"WHERE {WARM_TAXI} AND anomaly_score(value) > @score_cutoff ORDER BY ts")
BATCHED_SENTIMENT_SQL = SENTIMENT_SQL.replace(
    "WHERE aws_comprehend_detect_sentiment_confidence",
    "WHERE (SELECT sqlml_warm_comprehend(review, 'en') FROM product_reviews) >= 0\n"
    "  AND aws_comprehend_detect_sentiment_confidence")
