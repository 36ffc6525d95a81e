"""Applying one internal batch of an ingest job to the records with Salesforce's DML semantics.

Two phases: :func:`prepare.prepare_batch` validates and converts the rows without touching the
database (it can run while other batches write), and :func:`commit.commit_batch` runs inside the
single write transaction: it matches keys, decides insert/update/delete per row, checks required
and unique fields, and writes with ``executemany``.
"""
