"""Gzip of Bulk upload bodies: the level chosen by measurement, and which answers mean "not understood".

REST API Developer Guide, "Compression Headers": "Include a Content-Encoding: gzip or
Content-Encoding: deflate header to compress a request. REST API decompresses any requests before
processing." The Bulk API 2.0 guide documents compressed responses only and points to that page;
Salesforce's own WSC gzips Bulk 1.0 batch uploads by default. No public client is known to gzip
the Bulk 2.0 CSV PUT (salesforce-facts §1), hence the fallback to a plain upload.
"""

from typing import Literal

from isal import isal_zlib

UploadCompression = Literal["gzip", "none"]
"""How job CSVs are uploaded: gzip (``Content-Encoding: gzip``) or plain."""

# Compressed with ISA-L (python-isal): the same gzip stream any inflater reads, for a quarter of
# zlib's CPU. Measured on one job body of the demo (9,086 rows, 1.90 MB; `uv run python -m
# benchmarks.upload_compression --repeat 10`, a shared 2-core machine): ISA-L level 2 keeps 16.6 %
# of the bytes at 0.0009 CPU s/MB (level 1: 16.8 %, the same CPU; 3: 16.4 % at 0.0023), zlib
# level 1 18.0 % at 0.0036, zlib 6 13.7 % at 0.0107. A 2M-row night (~440 MB of CSV) uploads
# ~73 MB for ~0.4 CPU seconds (zlib 1: ~79 MB for ~1.6).
GZIP_LEVEL = 2
_GZIP_WBITS = 16 + isal_zlib.MAX_WBITS

# What an org that does not decompress request bodies may answer: 415 is RFC 9110's status for
# an unsupported content coding; 400 a server that read the bytes as CSV or as broken gzip.
# Salesforce's actual answer is not known (salesforce-facts §1, UNCONFIRMED).
REFUSED_CODING_STATUSES = frozenset({400, 415})


def gzip_body(body: bytes) -> bytes:
    """``body`` as a gzip stream (RFC 1952) at ISA-L's `GZIP_LEVEL`."""
    return isal_zlib.compress(body, GZIP_LEVEL, wbits=_GZIP_WBITS)
