"""Salesforce record ids: 15-character keys with the 3-character case-checksum suffix."""

import re

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID_SHAPE = re.compile(r"[0-9A-Za-z]{15}(?:[0-9A-Za-z]{3})?")
# Marks ids minted by this sandbox (real ids carry the pod here).
_POD = "Sx0"
_LOW_DIGITS = 2
_LOW_SPAN = 62**_LOW_DIGITS
_HIGH_DIGITS = 7


def _upper_bits(chunk: str) -> int:
    return sum(1 << i for i, char in enumerate(chunk) if "A" <= char <= "Z")


def checksum_suffix(id15: str) -> str:
    """The 3 characters Salesforce appends to a 15-character id to make it case-insensitive."""
    return "".join(_SUFFIX_ALPHABET[_upper_bits(id15[i : i + 5])] for i in (0, 5, 10))


def to_id18(value: str) -> str | None:
    """The canonical 18-character form of a 15- or 18-character id, or None if malformed."""
    if not _ID_SHAPE.fullmatch(value):
        return None
    head = value[:15]
    id18 = head + checksum_suffix(head)
    if len(value) == 18 and value[15:].upper() != id18[15:]:
        return None
    return id18


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


_LOW_STRINGS = [_base62(n, _LOW_DIGITS) for n in range(_LOW_SPAN)]
_LOW_BITS = [_upper_bits(s) for s in _LOW_STRINGS]


def mint_ids(prefix: str, first: int, count: int) -> list[str]:
    """``count`` consecutive 18-character ids with the key prefix (e.g. ``006``), from counter ``first``.

    Built from precomputed tables so that minting 10,000 ids costs a few milliseconds.
    """
    ids: list[str] = []
    number = first
    end = first + count
    while number < end:
        high, low = divmod(number, _LOW_SPAN)
        take = min(end - number, _LOW_SPAN - low)
        head = prefix + _POD + _base62(high, _HIGH_DIGITS)
        # chunks 1 and 2 (chars 0-9) are fixed for the block; chunk 3 = 3 high chars + 2 low chars
        fixed = _SUFFIX_ALPHABET[_upper_bits(head[0:5])] + _SUFFIX_ALPHABET[_upper_bits(head[5:10])]
        high_bits = _upper_bits(head[10:13])
        ids.extend(
            f"{head}{_LOW_STRINGS[i]}{fixed}{_SUFFIX_ALPHABET[high_bits | (_LOW_BITS[i] << 3)]}"
            for i in range(low, low + take)
        )
        number += take
    return ids
