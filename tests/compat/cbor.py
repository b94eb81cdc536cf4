"""Just enough CBOR for the compatibility tests: requests (maps, strings, bytes, integers,
booleans, tags) and AWS's answers, with no package beyond the standard library."""

from __future__ import annotations

import struct


class Tag:
    """A CBOR tagged value."""

    def __init__(self, tag: int, value):
        self.tag, self.value = tag, value

    def __eq__(self, other):
        return isinstance(other, Tag) and (self.tag, self.value) == (other.tag, other.value)

    def __repr__(self):
        return f"Tag({self.tag}, {self.value!r})"


def cbor_encode(v) -> bytes:
    """Just enough CBOR for requests: maps, strings, bytes, integers, booleans, tags."""

    def head(major: int, n: int) -> bytes:
        if n < 24:
            return bytes([major << 5 | n])
        for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
            if n < 1 << (8 * size):
                return bytes([major << 5 | info]) + n.to_bytes(size, "big")
        raise ValueError("integer too large")

    if isinstance(v, bool):
        return b"\xf5" if v else b"\xf4"
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, str):
        b = v.encode("utf-8")
        return head(3, len(b)) + b
    if isinstance(v, (bytes, bytearray)):
        return head(2, len(v)) + bytes(v)
    if isinstance(v, Tag):
        return head(6, v.tag) + cbor_encode(v.value)
    if isinstance(v, list):
        return head(4, len(v)) + b"".join(cbor_encode(x) for x in v)
    if isinstance(v, dict):
        return head(5, len(v)) + b"".join(cbor_encode(k) + cbor_encode(x) for k, x in v.items())
    raise TypeError(f"cannot CBOR-encode {type(v)}")


def cbor_decode(data: bytes, keep_tags: bool = True):
    """Decodes one CBOR item; tags are kept as Tag objects (or dropped, keeping their value, with
    `keep_tags=False`), floats as floats."""
    pos = 0

    def arg(info):
        nonlocal pos
        if info < 24:
            return info
        size = {24: 1, 25: 2, 26: 4, 27: 8}[info]
        v = int.from_bytes(data[pos:pos + size], "big")
        pos += size
        return v

    def item():
        nonlocal pos
        b = data[pos]
        pos += 1
        major, info = b >> 5, b & 31
        if major == 7:
            if info in (20, 21):
                return info == 21
            if info in (22, 23):
                return None
            fmt = {25: (">e", 2), 26: (">f", 4), 27: (">d", 8)}.get(info)
            if fmt is None:
                raise ValueError(f"unsupported CBOR simple value {info}")
            (v,) = struct.unpack(fmt[0], data[pos:pos + fmt[1]])
            pos += fmt[1]
            return v
        if major in (0, 1):
            v = arg(info)
            return v if major == 0 else -1 - v
        if major in (2, 3):
            if info == 31:
                chunks = []
                while data[pos] != 0xFF:
                    chunks.append(item())
                pos += 1
                return (b"" if major == 2 else "").join(chunks)
            n = arg(info)
            raw = data[pos:pos + n]
            pos += n
            return raw if major == 2 else raw.decode("utf-8")
        if major == 4:
            if info == 31:
                out = []
                while data[pos] != 0xFF:
                    out.append(item())
                pos += 1
                return out
            return [item() for _ in range(arg(info))]
        if major == 5:
            out = {}
            if info == 31:
                while data[pos] != 0xFF:
                    k = item()
                    out[k] = item()
                pos += 1
                return out
            for _ in range(arg(info)):
                k = item()
                out[k] = item()
            return out
        if major == 6:
            t = arg(info)
            value = item()
            return Tag(t, value) if keep_tags else value
        raise ValueError(f"unsupported CBOR major type {major}")

    value = item()
    if pos != len(data):
        raise ValueError("trailing bytes after CBOR item")
    return value
