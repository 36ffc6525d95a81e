"""Compressed request bodies (REST API "Compression Headers"): decoded, refused, or rejected when broken."""

import gzip
import zlib
from typing import Any

import pytest

from sync_assets.sandbox.errors import ApiError
from sync_assets.sandbox.request_encoding import decoded_body
from sync_assets_tests.sandbox.bulk_client import BulkClient, opportunity_csv


def stats(bulk: BulkClient) -> dict[str, Any]:
    return bulk.session.get(f"{bulk.root}/__sandbox/stats").json()


def open_job(bulk: BulkClient) -> str:
    return bulk.create(object="Opportunity", operation="insert").json()["id"]


@pytest.mark.parametrize(
    ("coding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress)],
)
def test_a_compressed_upload_is_processed_as_its_csv_and_counted_as_sent(
    bulk: BulkClient, prefix: str, coding: str, compress: Any
) -> None:
    data = opportunity_csv(prefix, 400).encode()
    body = compress(data)
    job = open_job(bulk)
    before = stats(bulk)["totals"]["request_body_bytes"]
    put = bulk.upload(job, body, headers={"Content-Encoding": coding})
    after = stats(bulk)["totals"]["request_body_bytes"]

    assert put.status_code == 201, put.text
    # On the wire: the compressed bytes; in the job: the CSV.
    assert after - before == len(body) < len(data)
    assert stats(bulk)["jobs"][job]["upload_bytes"] == len(data)
    bulk.patch(job, "UploadComplete")
    assert bulk.wait(job)["numberRecordsProcessed"] == 400


def test_a_corrupt_gzip_body_is_a_400_and_uploads_nothing(bulk: BulkClient, prefix: str) -> None:
    data = opportunity_csv(prefix, 5).encode()
    job = open_job(bulk)
    broken = gzip.compress(data)[:-12]  # the last block and the trailer cut off

    answer = bulk.upload(job, broken, headers={"Content-Encoding": "gzip"})

    assert answer.status_code == 400
    [error] = answer.json()
    assert error["errorCode"] == "INVALID_REQUEST"
    assert error["message"].startswith("The request body is not valid gzip data")
    # Nothing was stored: the same job takes the upload again.
    assert bulk.upload(job, data).status_code == 201


def test_an_unknown_coding_is_415(bulk: BulkClient) -> None:
    answer = bulk.upload(open_job(bulk), b"\x00", headers={"Content-Encoding": "br"})

    assert answer.status_code == 415
    assert answer.json()[0]["errorCode"] == "UNSUPPORTED_MEDIA_TYPE"


def test_a_sandbox_refusing_compressed_uploads_answers_415_and_takes_plain_ones(
    fresh_sandbox,  # type: ignore[no-untyped-def]
    prefix: str,
) -> None:
    bulk = BulkClient(fresh_sandbox(accounts=2, refuse_compressed_uploads=True).connection)
    data = opportunity_csv(prefix, 3).encode()
    job = open_job(bulk)

    refused = bulk.upload(job, gzip.compress(data), headers={"Content-Encoding": "gzip"})

    assert refused.status_code == 415
    assert stats(bulk)["totals"]["request_body_refused:415"] == 1
    assert refused.json() == [
        {
            "errorCode": "UNSUPPORTED_MEDIA_TYPE",
            "message": "Content-Encoding gzip is not supported for this request",
        }
    ]
    assert bulk.upload(job, data).status_code == 201


AB = b"a" * 64 + b"b" * 64


@pytest.mark.parametrize(
    ("body", "coding"),
    [
        (gzip.compress(b"a" * 64) + gzip.compress(b"b" * 64), "gzip"),
        (zlib.compress(AB), "deflate"),
        (gzip.compress(AB), "x-gzip"),
        (AB, "identity"),
        (AB, ""),
    ],
    ids=["gzip-two-members", "deflate", "x-gzip", "identity", "none"],
)
def test_every_gzip_member_is_read_and_identity_is_as_sent(body: bytes, coding: str) -> None:
    assert decoded_body(body, coding, 1_000, refuse=False) == AB


def test_the_size_limit_counts_decompressed_bytes() -> None:
    small = gzip.compress(b"x" * 1_001)
    assert len(small) < 1_000

    with pytest.raises(ApiError) as raised:
        decoded_body(small, "gzip", 1_000, refuse=False)

    assert raised.value.status == 400
    assert raised.value.message.startswith("The uploaded data exceeds the maximum of 1000 bytes")
    assert decoded_body(small, "gzip", 1_001, refuse=False) == b"x" * 1_001
