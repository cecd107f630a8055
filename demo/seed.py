"""The seed script: demo data and the seed's queries as one SQL file for any client.

    python -m demo.seed [--data nyc_taxi.csv] > seed.sql
    docker exec -i sqlml-mysql mysql -uroot -p... < seed.sql     (or mariadb ...)

It loads the same data as `make demo` (the project's reviews and the generated
taxi-like series, or NAB's nyc_taxi.csv) into database `demo`, creates
`anomaly_score` from Aurora's DDL through `sqlml translate`, and runs the seed's two
queries. The anomaly query runs first on the batch path (one warm-up sends the
10,320 readings in two requests) and then exactly as Aurora users write it, which
then reads its answers from the result cache: on the per-row path alone it would
send one request per reading. The server needs sqlml wired to a local service (or
AWS) whose endpoint `random-cut-forest-model-demo` exists, as `sqlml serve` has.
"""

from __future__ import annotations

import argparse
import sys

from pymysql.converters import escape_string

from demo.data import REVIEWS, read_taxi_csv
from demo.queries import (ANOMALY_DDL, ANOMALY_SQL, BATCHED_ANOMALY_SQL, BATCHED_CUTOFF_SQL,
                          SENTIMENT_SQL)
from sqlml.local import demo_taxi_series
from sqlml.translate import translate

ROWS_PER_INSERT = 1000


def _quote(text: str) -> str:
    return "'" + escape_string(text) + "'"


def seed_sql(taxi: list[tuple[str, float]]) -> str:
    """The whole script; statements end with ';' at line ends (no DELIMITER needed)."""
    out = ["-- sqlml seed script (python -m demo.seed): demo data and the seed's queries",
           "CREATE DATABASE IF NOT EXISTS demo CHARACTER SET utf8mb4;", "USE demo;",
           "DROP TABLE IF EXISTS product_reviews;",
           "CREATE TABLE product_reviews (id INT AUTO_INCREMENT PRIMARY KEY, product_id INT, review TEXT);",
           "INSERT INTO product_reviews (product_id, review) VALUES\n"
           + ",\n".join(f"({product}, {_quote(text)})" for product, text in REVIEWS) + ";",
           "DROP TABLE IF EXISTS nyc_taxi;",
           "CREATE TABLE nyc_taxi (ts DATETIME PRIMARY KEY, value DOUBLE);"]
    for i in range(0, len(taxi), ROWS_PER_INSERT):
        out.append("INSERT INTO nyc_taxi VALUES "
                   + ",".join(f"({_quote(ts)},{value!r})" for ts, value in taxi[i:i + ROWS_PER_INSERT]) + ";")
    out += ["DROP FUNCTION IF EXISTS anomaly_score;",
            f"-- Aurora's DDL: {ANOMALY_DDL};", translate(ANOMALY_DDL) + ";",
            "SELECT CONVERT(sqlml_version() USING utf8mb4) AS sqlml_version;",
            "-- seed query 1: average sentiment per product, confident assessments only",
            SENTIMENT_SQL + ";",
            "-- seed query 2: readings above mean + 3 standard deviations of the anomaly score,",
            "-- first on the batch path (a warm-up sends every reading in batches) ...",
            BATCHED_CUTOFF_SQL + ";",
            "SELECT ROUND(@score_cutoff, 3) AS score_cutoff;",
            BATCHED_ANOMALY_SQL + ";",
            "-- ... then as Aurora users write it (its answers now come from the result cache)",
            ANOMALY_SQL + ";",
            "SHOW GLOBAL STATUS LIKE 'Aurora_ml%';"]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="demo.seed", description="print the seed script (SQL) on stdout")
    p.add_argument("--data", help="NAB nyc_taxi.csv to use instead of the generated series")
    a = p.parse_args(argv)
    sys.stdout.write(seed_sql(read_taxi_csv(a.data) if a.data else demo_taxi_series()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
