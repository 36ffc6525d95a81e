"""Everything the sync keeps between nights under the state dir: layout, ledger, locks, progress."""
