"""Gzip of Bulk upload bodies: the level chosen by measurement, and which answers mean "not understood".

REST API Developer Guide, "Compression Headers": "Include a Content-Encoding: gzip or
Content-Encoding: deflate header to compress a request. REST API decompresses any requests before
processing." The Bulk API 2.0 guide documents compressed responses only and points to that page;
Salesforce's own WSC gzips Bulk 1.0 batch uploads by default. No public client is known to gzip
the Bulk 2.0 CSV PUT (salesforce-facts §1), hence the fallback to a plain upload.
"""

import zlib
from typing import Literal

UploadCompression = Literal["gzip", "none"]
"""How job CSVs are uploaded: gzip (``Content-Encoding: gzip``) or plain."""

# Measured on one job body of the demo (9,086 rows, 1.90 MB; `benchmarks/upload_compression.py`,
# a shared 2-core machine): level 1 keeps 18.0 % of the bytes at 0.0045 CPU s/MB, 3 16.5 % at
# 0.0065, 6 13.7 % at 0.0144, 9 13.5 % at 0.0205. Level 1: a 2M-row night (~440 MB of CSV)
# uploads ~79 MB for ~2 CPU seconds; level 6 would save ~19 MB more for three times the CPU.
GZIP_LEVEL = 1
_GZIP_WBITS = 16 + zlib.MAX_WBITS

# What an org that does not decompress request bodies may answer: 415 is RFC 9110's status for
# an unsupported content coding; 400 a server that read the bytes as CSV or as broken gzip.
# Salesforce's actual answer is not known (salesforce-facts §1, UNCONFIRMED).
REFUSED_CODING_STATUSES = frozenset({400, 415})


def gzip_body(body: bytes) -> bytes:
    """``body`` as a gzip stream (RFC 1952) at `GZIP_LEVEL`."""
    return zlib.compress(body, GZIP_LEVEL, wbits=_GZIP_WBITS)
