"""Request bodies sent with ``Content-Encoding: gzip`` or ``deflate``, decoded before anything reads them.

REST API Developer Guide, "Compression Headers": "Include a Content-Encoding: gzip or
Content-Encoding: deflate header to compress a request. REST API decompresses any requests before
processing." Bulk API 2.0 runs on the REST framework and points to that page; whether the ingest
upload PUT takes a compressed body is not stated anywhere (salesforce-facts §1), so the sandbox
decodes every request, and can refuse compressed bodies (``--refuse-compressed-uploads``) to play
an org that does not.
"""

import zlib

from sync_assets.sandbox.errors import ApiError

# RFC 9110 §8.4.1: "x-gzip" is an alias of gzip; "deflate" is the zlib format (RFC 1950).
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_IDENTITY = ("", "identity")


def body_too_large(max_bytes: int) -> ApiError:
    return ApiError(
        400,
        "BULK_API_ERROR",
        f"The uploaded data exceeds the maximum of {max_bytes} bytes "
        f"({max_bytes // (1024 * 1024)} MB) for one job; split it into several jobs",
    )


def decoded_body(body: bytes, content_encoding: str, max_bytes: int, refuse: bool) -> bytes:
    """The body as the resources read it: decompressed, at most ``max_bytes``.

    Raises the org's answer for a coding it refuses (415: RFC 9110 §15.5.16 prescribes it for an
    unsupported content coding) and for a body that is not what its header says (400).
    """
    coding = content_encoding.strip().lower()
    if coding in _IDENTITY:
        return body
    wbits = _WBITS.get(coding)
    if wbits is None or refuse:
        # [UNCONFIRMED] no capture of Salesforce refusing a content coding: the 415 the sandbox
        # answers for an unsupported Content-Type, with the coding named.
        raise ApiError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"Content-Encoding {content_encoding} is not supported for this request",
        )
    # The 100 MB upload limit is assumed to count decompressed bytes ([UNCONFIRMED], salesforce-
    # facts §1): a small body cannot expand past it here.
    return _decompress(body, wbits, max_bytes, coding)


def _decompress(body: bytes, wbits: int, max_bytes: int, coding: str) -> bytes:
    """Every member of the body (a gzip stream may hold several, as Java's GZIPInputStream reads)."""
    parts: list[bytes] = []
    size = 0
    rest = body
    try:
        while True:
            decompressor = zlib.decompressobj(wbits)
            part = decompressor.decompress(rest, max_bytes + 1 - size)
            size += len(part)
            if size > max_bytes:
                raise body_too_large(max_bytes)
            parts.append(part)
            if not decompressor.eof:
                raise zlib.error("the compressed body ends early")
            rest = decompressor.unused_data
            if not rest:
                return b"".join(parts)
    except zlib.error as error:
        # [UNCONFIRMED] Salesforce's answer to a corrupt compressed body is not documented or
        # captured (salesforce-facts §1); the nearest documented form is the REST error array
        # with INVALID_REQUEST.
        raise ApiError(
            400,
            "INVALID_REQUEST",
            f"The request body is not valid {coding} data: {error}",
        ) from None
