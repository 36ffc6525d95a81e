"""Unit tests: Salesforce id checksums and the upload parser's job-level checks."""

import pytest

from sync_assets.sandbox.ids import checksum_suffix, mint_ids, to_id18
from sync_assets.sandbox.objects import OPPORTUNITY
from sync_assets.sandbox.upload import UploadError, parse_upload


def test_checksum_follows_the_case_of_each_five_characters() -> None:
    assert checksum_suffix("001000000000000") == "AAA"
    assert checksum_suffix("A0000B0000C0000") == "BBB"
    assert checksum_suffix("0000A00000000AA") == "QAY"


def test_minted_ids_are_unique_valid_and_accept_their_15_character_form() -> None:
    ids = mint_ids("006", 3_800, 200) + mint_ids("006", 62**4 - 3, 6)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 18 and i.startswith("006") for i in ids)
    assert all(to_id18(i) == i and to_id18(i[:15]) == i for i in ids)
    assert to_id18(ids[0][:15] + "ZZZ") is None
    assert to_id18("too-short") is None


def test_parse_keeps_quoted_newlines_and_counts_rows() -> None:
    data = b'Name,StageName,CloseDate,Description\nA,Prospecting,2026-01-01,"x\r\ny"\n'
    parsed = parse_upload(data, OPPORTUNITY, "COMMA", "LF")
    assert parsed.frame.rows() == [("A", "Prospecting", "2026-01-01", "x\r\ny")]
    assert [c.field.name for c in parsed.columns] == [
        "Name",
        "StageName",
        "CloseDate",
        "Description",
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"Name\n\xff\n", "InvalidBatch : Failed to parse CSV. Invalid UTF-8 at byte 5"),
        (b"", "ClientInputError : No content found in the CSV data"),
        (b"Name,Name\nA,B\n", "InvalidBatch : Duplicate field name: Name"),
        (b"Name,StageName\nA\n", "ClientInputError : Row 2 has 1 columns; the header has 2"),
        (b"Account.Name\nA\n", "InvalidBatch : Field name not found : Account.Name"),
    ],
)
def test_job_level_failures(data: bytes, message: str) -> None:
    with pytest.raises(UploadError) as raised:
        parse_upload(data, OPPORTUNITY, "COMMA", "LF")
    assert raised.value.error_message == message


def test_relationship_column_resolves_to_the_lookup() -> None:
    parsed = parse_upload(b"account.external_id__c\nACC-1\n", OPPORTUNITY, "COMMA", "LF")
    [column] = parsed.columns
    assert (column.field.name, column.via.name if column.via else None) == (
        "AccountId",
        "External_Id__c",
    )
