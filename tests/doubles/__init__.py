"""Test doubles: the fake AWS services (fakeaws), a fault-injecting front for moto's S3
(s3stub), and moto's own server as an independent wire check (motoserver)."""
