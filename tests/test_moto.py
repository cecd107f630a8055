"""An independent wire-format check: sqlml against moto's Comprehend and SageMaker Runtime.

moto is a third-party implementation: if our requests or our parsing drifted from
the real protocols, it would disagree. (It cannot inject faults; the fake does that.)
"""

import json
import urllib.request

import pytest

from tests.doubles.motoserver import moto_server


@pytest.fixture
def moto_url(db):
    with moto_server() as url, db.settings(comprehend_endpoint_url=url, sagemaker_endpoint_url=url):
        yield url


def test_detect_sentiment_through_moto(db, moto_url):
    label, confidence = db.query("SELECT aws_comprehend_detect_sentiment('I like it', 'en'), "
                                 "aws_comprehend_detect_sentiment_confidence('I like it', 'en')")[0]
    import boto3

    client = boto3.client("comprehend", endpoint_url=moto_url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    reply = client.detect_sentiment(Text="I like it", LanguageCode="en")
    assert label == reply["Sentiment"]
    assert confidence == pytest.approx(reply["SentimentScore"][reply["Sentiment"].capitalize()])


def test_invoke_endpoint_through_moto(db, moto_url):
    results = {"results": [{"Body": "0.25\n", "ContentType": "text/csv"},
                           {"Body": '{"scores":[{"score":1.75}]}', "ContentType": "application/json"}]}
    request = urllib.request.Request(f"{moto_url}/moto-api/static/sagemaker/endpoint-results",
                                     data=json.dumps(results).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request).read()
    assert db.scalar("SELECT aws_sagemaker_invoke_endpoint_real('any-endpoint', 'REAL', 1, 1, 'a')") == 0.25
    assert db.scalar("SELECT aws_sagemaker_invoke_endpoint_real('any-endpoint', 'REAL', 1, 2)") == 1.75
