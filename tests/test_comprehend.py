"""aws_comprehend_detect_sentiment[_confidence] on a real server against the fake Comprehend."""

import pytest

from tests.doubles.fakeaws import fake_sentiment

REVIEWS = [
    (1, "I love this blender, it is excellent"),
    (1, "Terrible motor, broken after a week"),
    (1, "It is a blender"),
    (1, "Great price but awful noise"),
    (1, "Best purchase, amazing and perfect"),
    (1, None),
    (2, "bad"),
]


@pytest.fixture
def reviews(db):
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS product_reviews")
        cur.execute("CREATE TABLE product_reviews (id INT AUTO_INCREMENT PRIMARY KEY, product_id INT, "
                    "review TEXT CHARACTER SET utf8mb4)")
        cur.executemany("INSERT INTO product_reviews (product_id, review) VALUES (%s, %s)", REVIEWS)
    return REVIEWS


def test_label_and_confidence_match_the_service(db, fake, reviews):
    rows = db.query("SELECT review, aws_comprehend_detect_sentiment(review, 'en'), "
                    "aws_comprehend_detect_sentiment_confidence(review, 'en') FROM product_reviews ORDER BY id")
    assert len(rows) == len(REVIEWS)
    for review, label, confidence in rows:
        if review is None:
            assert (label, confidence) == (None, None)
            continue
        expected_label, scores = fake_sentiment(review)
        assert label == expected_label
        assert confidence == pytest.approx(scores[expected_label.capitalize()])


def test_seed_query_average_sentiment_of_confident_assessments(db, fake, reviews):
    # The seed's first example (Aurora docs): average sentiment of a product's
    # reviews, counting only assessments the service is confident about.
    sql = """
        SELECT AVG(CASE aws_comprehend_detect_sentiment(review, 'en')
                   WHEN 'POSITIVE' THEN 1.0 WHEN 'NEGATIVE' THEN -1.0 ELSE 0.0 END) AS avg_sentiment,
               COUNT(*) AS total
        FROM product_reviews
        WHERE product_id = 1 AND aws_comprehend_detect_sentiment_confidence(review, 'en') >= 0.7"""
    avg, total = db.query(sql)[0]
    confident = [fake_sentiment(r) for p, r in REVIEWS if p == 1 and r is not None]
    confident = [label for label, scores in confident if scores[label.capitalize()] >= 0.7]
    weights = {"POSITIVE": 1.0, "NEGATIVE": -1.0}
    assert total == len(confident) >= 2
    assert float(avg) == pytest.approx(sum(weights.get(label, 0.0) for label in confident) / len(confident), abs=1e-4)


def test_null_text_or_language_is_null_without_a_request(db, fake):
    assert db.query("SELECT aws_comprehend_detect_sentiment(NULL, 'en'), "
                    "aws_comprehend_detect_sentiment('good', NULL), "
                    "aws_comprehend_detect_sentiment_confidence(NULL, 'en')") == [(None, None, None)]
    assert fake.stats()["requests"] == 0


def test_utf8mb4_text_reaches_the_service_intact(db, fake):
    assert db.scalar("SELECT aws_comprehend_detect_sentiment('café 😀 great', 'fr')") == "POSITIVE"
    assert fake.stats()["requests"] == 1


def test_result_is_a_utf8mb4_string_usable_by_json_functions(db):
    value = db.scalar("SELECT JSON_OBJECT('s', aws_comprehend_detect_sentiment('good', 'en'))")
    assert value.replace(" ", "") == '{"s":"POSITIVE"}'


@pytest.mark.parametrize("call, message", [
    ("aws_comprehend_detect_sentiment('x')", "takes (text, language_code [, max_batch_size]); got 1 argument"),
    ("aws_comprehend_detect_sentiment('x', 'en', 5, 6)", "got 4 arguments"),
    ("aws_comprehend_detect_sentiment('x', 'xx')", "language 'xx' unsupported; use ar de en es"),
    ("aws_comprehend_detect_sentiment('x', 'en', 0)", "3rd argument (max_batch_size) must be an integer > 0"),
    ("aws_comprehend_detect_sentiment_confidence('x', 'en', -3)", "max_batch_size) must be an integer > 0"),
    # Issue 13.7: a number where the code belongs was "internal error: AttributeError".
    ("aws_comprehend_detect_sentiment('great', 1)", "language '1' unsupported; use ar de en es"),
    ("aws_comprehend_detect_sentiment_confidence('great', 1.5e0)", "language '1.5' unsupported"),
    ("sqlml_warm_comprehend('great', 2.50)", "language '2.50' unsupported"),
])
def test_bad_constant_arguments_fail_at_init_with_the_fix(db, fake, call, message):
    with pytest.raises(Exception) as err:
        db.query(f"SELECT {call}")
    assert "Can't initialize function" in str(err.value)
    assert message in err.value.args[1]
    assert fake.stats()["requests"] == 0


@pytest.mark.parametrize("text, message", [
    ("''", "aws_comprehend_detect_sentiment: text is empty; Comprehend needs 1 to 5000 bytes"),
    ("REPEAT('é', 2501)", "aws_comprehend_detect_sentiment: text is 5002 bytes; Comprehend accepts at most 5000"),
])
def test_bad_text_is_a_clear_error_without_a_request(db, fake, text, message):
    with pytest.raises(pymysql_error()) as err:
        db.query(f"SELECT aws_comprehend_detect_sentiment({text}, 'en')")
    assert message in err.value.args[1]
    assert fake.stats()["requests"] == 0


def test_language_from_a_column_is_checked_per_row(db, fake):
    with pytest.raises(pymysql_error()) as err:
        db.query("SELECT aws_comprehend_detect_sentiment('good', l) FROM "
                 "(SELECT 'en' AS l UNION ALL SELECT 'tlh') AS t")
    assert "language 'tlh' unsupported" in str(err.value)


def test_text_of_exactly_5000_bytes_is_accepted(db, fake):
    assert db.scalar("SELECT aws_comprehend_detect_sentiment(REPEAT('a', 5000), 'en')") == "NEUTRAL"


def pymysql_error():
    import pymysql

    return pymysql.err.MySQLError
