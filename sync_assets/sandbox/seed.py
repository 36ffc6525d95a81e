"""Seeding the sandbox org on first start: Accounts ``ACC-000000``… that opportunities can reference."""

from sync_assets.sandbox.ids import mint_ids
from sync_assets.sandbox.jobs import sf_timestamp
from sync_assets.sandbox.objects import ACCOUNT
from sync_assets.sandbox.store import Database

_SEEDED = "seeded_accounts"


def account_key(number: int) -> str:
    return f"ACC-{number:06d}"


def seed_accounts(db: Database, user_id: str, count: int) -> None:
    """Create ``count`` Accounts with ``External_Id__c`` = ``ACC-000000``…, once per data dir."""
    if db.get_meta(_SEEDED) is not None:
        return
    now = sf_timestamp()
    with db.write() as conn:
        first = db.allocate(conn, f"counter:{ACCOUNT.key_prefix}", count)
        ids = mint_ids(ACCOUNT.key_prefix, first, count)
        conn.executemany(
            'INSERT INTO "Account" ("Id", "IsDeleted", "Name", "OwnerId", "CreatedDate", '
            '"CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp", '
            '"External_Id__c") VALUES (?, 0, ?, ?, ?, ?, ?, ?, ?, ?)',
            (
                (
                    ids[n],
                    f"Account {account_key(n)}",
                    user_id,
                    now,
                    user_id,
                    now,
                    user_id,
                    now,
                    account_key(n),
                )
                for n in range(count)
            ),
        )
        db.set_meta(conn, _SEEDED, str(count))
