"""The nightly drop: reading, validating, sharding and staging it against the ledger."""
