import sqlite3
from collections.abc import Iterator

import pytest

from sync_assets.sandbox.soql.compiler import (
    CompiledQuery,
    FieldSpec,
    ObjectSpec,
    compile_soql,
    is_case_sensitive,
)
from sync_assets.sandbox.soql.errors import SoqlError


def _object(name: str, fields: dict[str, str], relationships: dict | None = None) -> ObjectSpec:
    return ObjectSpec(
        name=name,
        fields={field: FieldSpec(field, soql_type) for field, soql_type in fields.items()},
        relationships=relationships or {},
    )


CATALOG = {
    "Opportunity": _object(
        "Opportunity",
        {
            "Id": "id",
            "Name": "string",
            "StageName": "picklist",
            "CloseDate": "date",
            "Amount": "currency",
            "Probability": "percent",
            "External_Id__c": "string",
            "Sync_Partition__c": "string",
            "AccountId": "reference",
            "IsWon": "boolean",
            "CreatedDate": "datetime",
            "Description": "textarea",
        },
        {"Account": ("Account", "AccountId")},
    ),
    "Account": _object("Account", {"Id": "id", "Name": "string", "External_Id__c": "string"}),
}

ACCOUNT_COLUMNS = ("Id", "Name", "External_Id__c", "IsDeleted")
ACCOUNTS = [
    ("001000000000001AAA", "Zeta Corp", "ACC-1", 0),
    ("001000000000002AAA", "alpha inc", "ACC-2", 0),
    ("001000000000003AAA", "Gone Ltd", "ACC-3", 1),
]
OPPORTUNITY_COLUMNS = (
    "Id",
    "Name",
    "StageName",
    "CloseDate",
    "Amount",
    "Probability",
    "External_Id__c",
    "Sync_Partition__c",
    "AccountId",
    "IsWon",
    "CreatedDate",
    "Description",
    "IsDeleted",
)
# 006Ab0000000XyZ widens to 006Ab0000000XyZIAU: chunk capitals 0b01000→I, none→A, 0b10100→U.
OPPORTUNITIES = [
    ("006Ab0000000XyZIAU", "Acme", "Prospecting", "2026-01-15", 100.0, 10, "EXT-1", "P1",
     "001000000000001AAA", 0, "2026-01-10T08:00:00.000+0000", "first", 0),
    ("006000000000002AAA", "acme renewal", "Closed Won", "2026-02-01", 250.5, 100, "ext-1", "P1",
     "001000000000002AAA", 1, "2026-01-31T23:30:00.000+0000", None, 0),
    ("006000000000003AAA", "O'Brien \"Big\" deal", "Closed Lost", "2026-03-01", None, 0, "EXT-3",
     None, None, 0, "2026-02-01T00:00:00.000+0000", None, 0),
    ("006000000000004AAA", "100% done_now", "Prospecting", None, 50.0, None, "EXT-4", "P2",
     "001000000000003AAA", 0, "2026-02-02T12:00:00.000+0000", None, 0),
    ("006000000000005AAA", "back\\slash", "Qualification", "2026-01-31", 75.0, 20, "EXT-5", "P2",
     "001000000000001AAA", 0, "2026-02-03T00:00:00.000+0000", None, 0),
    ("006000000000006AAA", "line\nbreak café", "Qualification", "2026-04-01", 0.0, 20, None, "P2",
     None, 0, "2026-02-04T00:00:00.000+0000", None, 0),
    ("006000000000007AAA", "Deleted deal", "Prospecting", "2026-01-01", 999.0, 10, "EXT-7", "P1",
     "001000000000001AAA", 0, "2026-01-01T00:00:00.000+0000", None, 1),
]  # fmt: skip


def _create_table(connection: sqlite3.Connection, name: str, columns: tuple[str, ...]) -> None:
    connection.execute(f'CREATE TABLE "{name}" ({", ".join(f""" "{c}" """ for c in columns)})')


@pytest.fixture(scope="module")
def db() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    _create_table(connection, "Account", ACCOUNT_COLUMNS)
    _create_table(connection, "Opportunity", OPPORTUNITY_COLUMNS)
    connection.executemany("INSERT INTO Account VALUES (?, ?, ?, ?)", ACCOUNTS)
    placeholders = ", ".join("?" * len(OPPORTUNITY_COLUMNS))
    connection.executemany(f"INSERT INTO Opportunity VALUES ({placeholders})", OPPORTUNITIES)
    yield connection
    connection.close()


def run(db: sqlite3.Connection, soql: str, include_deleted: bool = False) -> list[tuple]:
    compiled = compile_soql(soql, CATALOG, include_deleted=include_deleted)
    return db.execute(compiled.sql, compiled.params).fetchall()


def names(db: sqlite3.Connection, where: str, include_deleted: bool = False) -> set[str]:
    rows = run(db, f"SELECT Name FROM Opportunity WHERE {where}", include_deleted)
    return {name for (name,) in rows}


def count(db: sqlite3.Connection, soql: str, include_deleted: bool = False) -> int:
    rows = run(db, soql, include_deleted)
    assert len(rows) == 1
    return rows[0][0]


def error_of(soql: str) -> SoqlError:
    with pytest.raises(SoqlError) as caught:
        compile_soql(soql, CATALOG)
    return caught.value


ALL_LIVE = {row[1] for row in OPPORTUNITIES if row[-1] == 0}


# -- SELECT list, columns, object and field names ------------------------------------------------


def test_columns_use_catalog_case_and_keywords_ignore_case() -> None:
    compiled = compile_soql(
        "select name, ACCOUNT.external_id__C, closedate from opportunity", CATALOG
    )
    assert compiled == CompiledQuery(
        object_name="Opportunity",
        is_count=False,
        columns=["Name", "Account.External_Id__c", "CloseDate"],
        sql=compiled.sql,
        params=[],
        limit=None,
    )


def test_object_prefix_on_fields_is_accepted(db: sqlite3.Connection) -> None:
    compiled = compile_soql(
        "SELECT Opportunity.Name, Opportunity.Account.Name FROM Opportunity "
        "WHERE Opportunity.External_Id__c = 'EXT-1'",
        CATALOG,
    )
    assert compiled.columns == ["Name", "Account.Name"]
    assert db.execute(compiled.sql, compiled.params).fetchall() == [("Acme", "Zeta Corp")]


def test_relationship_field_is_left_joined_through_the_foreign_key(db: sqlite3.Connection) -> None:
    rows = run(
        db,
        "SELECT Name, Account.External_Id__c, Account.Name FROM Opportunity "
        "WHERE Sync_Partition__c IN ('P1', 'P2') ORDER BY Name",
    )
    assert rows == [
        ("100% done_now", None, None),  # its Account is deleted
        ("Acme", "ACC-1", "Zeta Corp"),
        ("acme renewal", "ACC-2", "alpha inc"),
        ("back\\slash", "ACC-1", "Zeta Corp"),
        ("line\nbreak café", None, None),  # no Account at all
    ]


def test_deleted_parent_is_visible_with_include_deleted(db: sqlite3.Connection) -> None:
    rows = run(
        db,
        "SELECT Account.External_Id__c FROM Opportunity WHERE External_Id__c = 'EXT-4'",
        include_deleted=True,
    )
    assert rows == [("ACC-3",)]


def test_filter_and_order_on_relationship_field(db: sqlite3.Connection) -> None:
    rows = run(
        db,
        "SELECT Name FROM Opportunity WHERE Account.External_Id__c IN ('ACC-1', 'ACC-2') "
        "ORDER BY Account.Name, Name DESC",
    )
    # Account names sort case-insensitively: "alpha inc" before "Zeta Corp".
    assert rows == [("acme renewal",), ("back\\slash",), ("Acme",)]


def test_each_relationship_is_joined_once() -> None:
    compiled = compile_soql(
        "SELECT Account.Name, Account.External_Id__c FROM Opportunity "
        "WHERE Account.Name != null ORDER BY Account.Name",
        CATALOG,
    )
    assert compiled.sql.count("LEFT JOIN") == 1


def test_deleted_rows_are_excluded_unless_include_deleted(db: sqlite3.Connection) -> None:
    assert "Deleted deal" not in names(db, "Amount > 0")
    assert "Deleted deal" in names(db, "Amount > 0", include_deleted=True)


# -- comparison operators ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Amount = 100", {"Acme"}),
        ("Amount = 250.5", {"acme renewal"}),
        ("Amount < 75", {"100% done_now", "line\nbreak café"}),
        ("Amount <= 75", {"100% done_now", "line\nbreak café", "back\\slash"}),
        ("Amount > 100", {"acme renewal"}),
        ("Amount >= 100", {"Acme", "acme renewal"}),
        ("Amount > -1 AND Amount < 1", {"line\nbreak café"}),
        ("Probability = 20", {"back\\slash", "line\nbreak café"}),
        ("CloseDate = 2026-01-31", {"back\\slash"}),
        ("CloseDate < 2026-01-31", {"Acme"}),
        ("CloseDate >= 2026-03-01", {"O'Brien \"Big\" deal", "line\nbreak café"}),
        ("CreatedDate = 2026-01-31T23:30:00Z", {"acme renewal"}),
        # 2026-02-01T01:00:00+02:00 is 2026-01-31T23:00:00Z
        ("CreatedDate > 2026-02-01T01:00:00+02:00 AND CreatedDate < 2026-02-01T00:00:00Z",
         {"acme renewal"}),
        ("CreatedDate <= 2026-01-10T03:00:00-05:00", {"Acme"}),
        ("CreatedDate = 2026-02-02T12:00:00.000Z", {"100% done_now"}),
        ("IsWon = true", {"acme renewal"}),
        ("IsWon = false AND StageName = 'Prospecting'", {"Acme", "100% done_now"}),
        ("StageName > 'P' AND StageName < 'R'", {"Acme", "100% done_now", "back\\slash",
                                                  "line\nbreak café"}),
        ("Id = '006Ab0000000XyZIAU'", {"Acme"}),
        ("AccountId = '001000000000002AAA'", {"acme renewal"}),
    ],
)  # fmt: skip
def test_comparison_operators(db: sqlite3.Connection, where: str, expected: set[str]) -> None:
    assert names(db, where) == expected


@pytest.mark.parametrize("operator", ["!=", "<>"])
def test_not_equal_also_matches_null_fields_as_salesforce_does(
    db: sqlite3.Connection, operator: str
) -> None:
    assert names(db, f"Sync_Partition__c {operator} 'P2'") == {
        "Acme",
        "acme renewal",
        'O\'Brien "Big" deal',
    }


def test_fifteen_character_id_finds_the_record(db: sqlite3.Connection) -> None:
    assert names(db, "Id = '006Ab0000000XyZ'") == {"Acme"}
    assert names(db, "Id IN ('006000000000002', '006000000000003AAA')") == {
        "acme renewal",
        'O\'Brien "Big" deal',
    }


# -- null handling and NOT -----------------------------------------------------------------------


def test_equals_null_and_not_equals_null(db: sqlite3.Connection) -> None:
    assert names(db, "Amount = null") == {'O\'Brien "Big" deal'}
    assert names(db, "Amount != NULL") == ALL_LIVE - {'O\'Brien "Big" deal'}
    assert names(db, "AccountId = null") == {'O\'Brien "Big" deal', "line\nbreak café"}


def test_ordering_comparison_never_matches_null(db: sqlite3.Connection) -> None:
    assert 'O\'Brien "Big" deal' not in names(db, "Amount < 1000000")
    assert 'O\'Brien "Big" deal' not in names(db, "Amount > -1000000")


def test_not_negates_a_two_valued_condition(db: sqlite3.Connection) -> None:
    # Amount is null on O'Brien: "Amount > 60" is false there, so NOT makes it true.
    assert names(db, "NOT Amount > 60") == {
        "100% done_now",
        "line\nbreak café",
        'O\'Brien "Big" deal',
    }
    assert names(db, "NOT (Amount > 60 OR Sync_Partition__c = 'P2')") == {'O\'Brien "Big" deal'}
    assert names(db, "NOT NOT Amount > 200") == {"acme renewal"}


def test_in_and_not_in(db: sqlite3.Connection) -> None:
    assert names(db, "StageName IN ('closed won', 'CLOSED LOST')") == {
        "acme renewal",
        'O\'Brien "Big" deal',
    }
    assert names(db, "Amount IN (100, 75.0)") == {"Acme", "back\\slash"}
    assert names(db, "CloseDate IN (2026-01-15, 2026-04-01)") == {"Acme", "line\nbreak café"}
    # NOT IN keeps null fields, as != does.
    assert names(db, "Sync_Partition__c NOT IN ('P1')") == {
        "100% done_now",
        "back\\slash",
        "line\nbreak café",
        'O\'Brien "Big" deal',
    }


def test_null_inside_in_lists(db: sqlite3.Connection) -> None:
    assert names(db, "Sync_Partition__c IN ('P1', null)") == {
        "Acme",
        "acme renewal",
        'O\'Brien "Big" deal',
    }
    assert names(db, "Sync_Partition__c IN (null)") == {'O\'Brien "Big" deal'}
    assert names(db, "Sync_Partition__c NOT IN ('P1', null)") == {
        "100% done_now",
        "back\\slash",
        "line\nbreak café",
    }


def test_and_or_with_parentheses(db: sqlite3.Connection) -> None:
    assert names(db, "(Amount = 100 OR Amount = 75) AND Sync_Partition__c = 'P2'") == {
        "back\\slash"
    }
    assert names(db, "Amount = 100 OR (Amount = 75 AND Sync_Partition__c = 'P1')") == {"Acme"}
    assert names(db, "Amount > 0 AND IsWon = false AND StageName = 'Qualification'") == {
        "back\\slash"
    }


# -- case rules ----------------------------------------------------------------------------------


def test_text_equality_ignores_case(db: sqlite3.Connection) -> None:
    assert names(db, "Name = 'ACME'") == {"Acme"}
    assert names(db, "Name != 'ACME'") == ALL_LIVE - {"Acme"}
    assert names(db, "StageName = 'closed won'") == {"acme renewal"}


def test_external_id_compares_case_sensitively(db: sqlite3.Connection) -> None:
    assert names(db, "External_Id__c = 'EXT-1'") == {"Acme"}
    assert names(db, "External_Id__c = 'ext-1'") == {"acme renewal"}
    assert names(db, "External_Id__c IN ('ext-1', 'ext-3')") == {"acme renewal"}
    assert names(db, "Account.External_Id__c = 'acc-1'") == set()


def test_case_sensitivity_is_decided_per_field() -> None:
    assert is_case_sensitive(FieldSpec("External_Id__c", "string"))
    assert is_case_sensitive(FieldSpec("Legacy_External_Id__c", "string"))
    assert is_case_sensitive(FieldSpec("AccountId", "reference"))
    assert not is_case_sensitive(FieldSpec("Name", "string"))
    assert not is_case_sensitive(FieldSpec("StageName", "picklist"))


def test_keywords_and_names_ignore_case(db: sqlite3.Connection) -> None:
    rows = run(
        db,
        "sElEcT nAmE fRoM oPpOrTuNiTy wHeRe aMoUnT >= 250 AnD iswon = TRUE oRdEr By NaMe LiMiT 1",
    )
    assert rows == [("acme renewal",)]


# -- LIKE and string escapes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("Name LIKE 'acme%'", {"Acme", "acme renewal"}),
        ("Name LIKE 'ACM_'", {"Acme"}),
        ("Name LIKE '%\\%%'", {"100% done_now"}),
        ("Name LIKE '100\\% done\\_now'", {"100% done_now"}),
        ("Name LIKE '100% done\\_%'", {"100% done_now"}),
        ("Name LIKE 'back\\\\slash'", {"back\\slash"}),
        ("Name LIKE 'O\\'B%'", {"O'Brien \"Big\" deal"}),
        ("External_Id__c LIKE 'ext-%'", {"Acme", "acme renewal", "O'Brien \"Big\" deal",
                                          "100% done_now", "back\\slash"}),
        ("NOT Name LIKE '%a%'", {"100% done_now"}),
    ],
)  # fmt: skip
def test_like(db: sqlite3.Connection, where: str, expected: set[str]) -> None:
    assert names(db, where) == expected


def test_like_without_wildcards_is_whole_value_match(db: sqlite3.Connection) -> None:
    assert names(db, "Name LIKE 'acm'") == set()
    assert names(db, "Name LIKE '100_ done_now'") == {"100% done_now"}
    assert names(db, "Name LIKE '100\\_ done_now'") == set()


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("'O\\'Brien \\\"Big\\\" deal'", 'O\'Brien "Big" deal'),
        ("'back\\\\slash'", "back\\slash"),
        ("'line\\nbreak caf\\u00e9'", "line\nbreak café"),
        ("'LINE\\NBREAK CAFé'", "line\nbreak café"),
    ],
)
def test_string_escapes(db: sqlite3.Connection, literal: str, expected: str) -> None:
    assert names(db, f"Name = {literal}") == {expected}


def test_other_escapes_decode_to_control_characters() -> None:
    compiled = compile_soql(
        "SELECT Id FROM Opportunity WHERE Name = '\\t\\r\\b\\f\\T\\R\\B\\F'", CATALOG
    )
    assert compiled.params == ["\t\r\b\f\t\r\b\f"]


# -- ORDER BY and LIMIT --------------------------------------------------------------------------


def test_order_by_ascending_puts_nulls_first_and_ignores_case(db: sqlite3.Connection) -> None:
    rows = run(db, "SELECT Name, Amount FROM Opportunity ORDER BY Amount")
    assert [amount for _, amount in rows] == [None, 0.0, 50.0, 75.0, 100.0, 250.5]
    rows = run(db, "SELECT Name FROM Opportunity WHERE Name LIKE 'a%' ORDER BY Name DESC")
    assert rows == [("acme renewal",), ("Acme",)]


def test_order_by_descending_also_puts_nulls_first_by_default(db: sqlite3.Connection) -> None:
    rows = run(db, "SELECT CloseDate FROM Opportunity ORDER BY CloseDate DESC")
    assert [close for (close,) in rows][:2] == [None, "2026-04-01"]


def test_order_by_nulls_last_and_multiple_keys(db: sqlite3.Connection) -> None:
    rows = run(db, "SELECT Amount FROM Opportunity ORDER BY Amount ASC NULLS LAST")
    assert [amount for (amount,) in rows] == [0.0, 50.0, 75.0, 100.0, 250.5, None]
    rows = run(
        db,
        "SELECT StageName, Name FROM Opportunity ORDER BY StageName DESC NULLS FIRST, Amount ASC",
    )
    assert rows[:2] == [("Qualification", "line\nbreak café"), ("Qualification", "back\\slash")]


def test_limit(db: sqlite3.Connection) -> None:
    compiled = compile_soql("SELECT Name FROM Opportunity ORDER BY Amount DESC LIMIT 2", CATALOG)
    assert compiled.limit == 2
    # Nulls sort first in both directions unless NULLS LAST is given.
    assert db.execute(compiled.sql, compiled.params).fetchall() == [
        ('O\'Brien "Big" deal',),
        ("acme renewal",),
    ]
    assert run(db, "SELECT Name FROM Opportunity LIMIT 0") == []


# -- COUNT() -------------------------------------------------------------------------------------


def test_count(db: sqlite3.Connection) -> None:
    compiled = compile_soql("SELECT COUNT() FROM Opportunity", CATALOG)
    assert (compiled.is_count, compiled.columns, compiled.limit) == (True, [], None)
    assert count(db, "SELECT COUNT() FROM Opportunity") == len(ALL_LIVE)
    assert count(db, "SELECT COUNT() FROM Opportunity", include_deleted=True) == 7
    assert count(db, "select count ( ) from opportunity where Sync_Partition__c = 'P2'") == 3


def test_count_with_limit_caps_the_count(db: sqlite3.Connection) -> None:
    assert count(db, "SELECT COUNT() FROM Opportunity LIMIT 2") == 2
    assert count(db, "SELECT COUNT() FROM Opportunity WHERE Amount > 60 LIMIT 100") == 3
    assert count(db, "SELECT COUNT() FROM Opportunity WHERE Amount > 60 LIMIT 0") == 0
    assert count(db, "SELECT COUNT() FROM Account WHERE Name LIKE '%a%' LIMIT 5") == 2


def test_count_with_relationship_filter(db: sqlite3.Connection) -> None:
    assert count(db, "SELECT COUNT() FROM Opportunity WHERE Account.Name = 'ZETA CORP'") == 2


# -- errors --------------------------------------------------------------------------------------


def test_unknown_object_is_invalid_type() -> None:
    error = error_of("SELECT Id FROM Foo")
    assert error.error_code == "INVALID_TYPE"
    assert error.message == (
        "\nSELECT Id FROM Foo\n               ^\nERROR at Row:1:Column:16\n"
        "sObject type 'Foo' is not supported. If you are attempting to use a custom object, be "
        "sure to append the '__c' after the entity name. Please reference your WSDL or the "
        "describe call for the appropriate names."
    )
    assert str(error) == error.message


def test_unknown_field_is_invalid_field() -> None:
    error = error_of("SELECT Id, Foo FROM Opportunity")
    assert error.error_code == "INVALID_FIELD"
    assert error.message == (
        "\nSELECT Id, Foo FROM Opportunity\n           ^\nERROR at Row:1:Column:12\n"
        "No such column 'Foo' on entity 'Opportunity'. If you are attempting to use a custom "
        "field, be sure to append the '__c' after the custom field name. Please reference your "
        "WSDL or the describe call for the appropriate names."
    )


@pytest.mark.parametrize(
    ("soql", "text"),
    [
        ("SELECT Id FROM Opportunity WHERE External_Id = 'x'", "No such column 'External_Id' on entity 'Opportunity'"),
        ("SELECT Account.Foo FROM Opportunity", "No such column 'Foo' on entity 'Account'"),
        ("SELECT Id FROM Opportunity ORDER BY Bar", "No such column 'Bar' on entity 'Opportunity'"),
        ("SELECT Owner.Name FROM Opportunity", "Didn't understand relationship 'Owner' in field path."),
        ("SELECT Account.Owner.Name FROM Opportunity", "Didn't understand relationship 'Owner' in field path."),
        ("SELECT Name.Foo FROM Opportunity", "Didn't understand relationship 'Name' in field path."),
        ("SELECT Id FROM Opportunity WHERE Description = 'x'", "field 'Description' can not be filtered in a query call"),
        ("SELECT Id FROM Opportunity ORDER BY Description", "field 'Description' can not be sorted in a query call"),
    ],
)  # fmt: skip
def test_invalid_field_errors(soql: str, text: str) -> None:
    error = error_of(soql)
    assert error.error_code == "INVALID_FIELD"
    assert text in error.message


def test_filter_value_of_wrong_type_reports_the_condition_and_caret() -> None:
    error = error_of("SELECT Id FROM Opportunity WHERE CloseDate = 'x'")
    assert error.error_code == "INVALID_FIELD"
    assert error.message == (
        "\nCloseDate = 'x'\n            ^\nERROR at Row:1:Column:46\n"
        "value of filter criterion for field 'CloseDate' must be of type date and should not be "
        "enclosed in quotes"
    )


@pytest.mark.parametrize(
    ("where", "text"),
    [
        ("Amount = '100'", "field 'Amount' must be of type double and should not be enclosed in quotes"),
        ("Probability > 'x'", "field 'Probability' must be of type double and should not be"),
        ("Name = 5", "field 'Name' must be of type string and should be enclosed in quotes"),
        ("StageName IN ('Prospecting', 3)", "field 'StageName' must be of type string and should be"),
        ("IsWon = 'true'", "field 'IsWon' must be of type boolean and should not be enclosed"),
        ("CreatedDate > 2026-01-01", "field 'CreatedDate' must be of type dateTime and should not be"),
        ("CloseDate = 2026-01-01T00:00:00Z", "field 'CloseDate' must be of type date and should not"),
        ("AccountId = 5", "field 'AccountId' must be of type id and should be enclosed in quotes"),
        ("Amount LIKE '1%'", "field 'Amount' must be of type double and should not be enclosed"),
        ("Name = true", "field 'Name' must be of type string and should be enclosed in quotes"),
    ],
)  # fmt: skip
def test_type_mismatch_is_invalid_field(where: str, text: str) -> None:
    error = error_of(f"SELECT Id FROM Opportunity WHERE {where}")
    assert error.error_code == "INVALID_FIELD"
    assert "value of filter criterion for " + text in error.message


def test_invalid_id_and_like_on_id_are_filter_operator_errors() -> None:
    error = error_of("SELECT Id FROM Opportunity WHERE Id = 'abc'")
    assert (error.error_code, error.message.rsplit("\n", 1)[-1]) == (
        "INVALID_QUERY_FILTER_OPERATOR",
        "invalid ID field: abc",
    )
    error = error_of("SELECT Id FROM Opportunity WHERE AccountId LIKE '001%'")
    assert (error.error_code, error.message.rsplit("\n", 1)[-1]) == (
        "INVALID_QUERY_FILTER_OPERATOR",
        "invalid operator on id field",
    )


@pytest.mark.parametrize(
    ("soql", "last_line"),
    [
        ("SELECT Id FROM Opportunity WHERE Name = 'x' garbage", "unexpected token: 'garbage'"),
        ("SELECT Id FROM Opportunity WHERE", "unexpected token: <EOF>"),
        ("SELECT FROM Opportunity", "unexpected token: 'FROM'"),
        ("SELECT Id FROM Opportunity WHERE Limit = 1", "unexpected token: 'Limit'"),
        ("SELECT Id Opportunity", "unexpected token: 'Opportunity'"),
        ("", "unexpected token: <EOF>"),
        ("SELECT Id FROM Opportunity WHERE Name = \"x\"", "line 1:40 no viable alternative at character '\"'"),
        ("SELECT Id FROM Opportunity WHERE Name == 'x'", "unexpected token: '='"),
        ("SELECT Id FROM Opportunity WHERE Amount = 1 AND Amount = 2 OR Amount = 3", "unexpected token: 'OR'"),
        ("SELECT Id FROM Opportunity WHERE Name IN ()", "unexpected token: ')'"),
        ("SELECT Id FROM Opportunity WHERE Name NOT LIKE 'x'", "unexpected token: 'LIKE'"),
        ("SELECT Id FROM Opportunity WHERE Name LIKE 5", "unexpected token: '5'"),
        ("SELECT Id FROM Opportunity WHERE Name = Name", "unexpected token: 'Name'"),
        ("SELECT Id FROM Opportunity WHERE (Amount = 1", "unexpected token: <EOF>"),
        ("SELECT Id FROM Opportunity LIMIT 1.5", "unexpected token: '1.5'"),
        ("SELECT Id FROM Opportunity LIMIT -1", "unexpected token: '-1'"),
        ("SELECT Id FROM Opportunity ORDER BY Name NULLS", "unexpected token: <EOF>"),
        ("SELECT Id FROM Opportunity OFFSET 5", "unexpected token: 'OFFSET'"),
        ("SELECT Id FROM Opportunity WHERE Name = 'x", "line 1:42 mismatched character '<EOF>' expecting '''"),
        ("SELECT Id FROM Opportunity WHERE Name = 'a\\qb'", "Invalid string literal '\\q'. Illegal character sequence '\\q' in string literal."),
        ("SELECT Id FROM Opportunity WHERE Name = 'a\\%'", "Invalid string literal '\\%'. Illegal character sequence '\\%' in string literal."),
        ("SELECT Id FROM Opportunity WHERE CreatedDate > 2026-01-01T00:00:00", "line 1:66 no viable alternative at character '<EOF>'"),
        ("SELECT Id FROM Opportunity WHERE CloseDate = 2026-02-30", "invalid date: 2026-02-30"),
        ("SELECT Id, Name, Id FROM Opportunity", "duplicate field selected: Id"),
        ("SELECT COUNT(), Name FROM Opportunity", "COUNT() must be the only element in the SELECT list"),
        ("SELECT COUNT() FROM Opportunity ORDER BY Name", "Ordered field must be grouped or aggregated: Name"),
        ("SELECT COUNT(Id) FROM Opportunity", "The sandbox supports no SOQL function other than COUNT()"),
        ("SELECT MAX(Amount) FROM Opportunity", "The sandbox supports no SOQL function other than COUNT()"),
    ],
)  # fmt: skip
def test_malformed_queries(soql: str, last_line: str) -> None:
    error = error_of(soql)
    assert error.error_code == "MALFORMED_QUERY"
    assert error.message.endswith("\n" + last_line)


def test_error_location_on_a_later_line() -> None:
    error = error_of("SELECT Id\nFROM Opportunity\nWHERE Amount > 1 AND Foo = 2")
    assert error.error_code == "INVALID_FIELD"
    assert error.message.startswith("\nFoo = 2\n^\nERROR at Row:3:Column:22\nNo such column 'Foo'")


def test_error_at_end_of_query_points_at_its_last_character() -> None:
    error = error_of("SELECT Id FROM Opportunity WHERE CloseDate < 2016-07-31T04:17:54")
    assert error.message == (
        "\nCloseDate < 2016-07-31T04:17:54\n                              ^\n"
        "ERROR at Row:1:Column:64\nline 1:64 no viable alternative at character '<EOF>'"
    )


# -- injection -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "literal",
    [
        "'x\\' OR 1=1 --'",
        "'x\\'; DROP TABLE Opportunity; --'",
        '\'\\" OR \\"\\"=\\"\'',
        "'x\\u0027 OR 1=1 --'",
    ],
)
def test_injection_stays_inside_the_bound_literal(db: sqlite3.Connection, literal: str) -> None:
    compiled = compile_soql(f"SELECT Name FROM Opportunity WHERE Name = {literal}", CATALOG)
    assert "OR 1=1" not in compiled.sql
    assert "DROP" not in compiled.sql
    assert len(compiled.params) == 1
    assert db.execute(compiled.sql, compiled.params).fetchall() == []
    assert count(db, "SELECT COUNT() FROM Opportunity") == len(ALL_LIVE)


def test_sql_quote_doubling_is_not_a_soql_escape() -> None:
    error = error_of("SELECT Name FROM Opportunity WHERE Name = 'x'' OR ''1''=''1'")
    assert error.error_code == "MALFORMED_QUERY"
    assert error.message.endswith("unexpected token: '' OR ''")


def test_identifiers_cannot_carry_sql() -> None:
    assert error_of('SELECT Name FROM "Opportunity"').error_code == "MALFORMED_QUERY"
    assert error_of("SELECT Name; DROP TABLE Account FROM Opportunity").error_code == (
        "MALFORMED_QUERY"
    )
