"""Check a received dataset's structure and read the few UIDs the inbox needs, without decoding values.

The hot path of the C-STORE SCP must not decode datasets (pydicom element objects cost milliseconds per
instance). :func:`inspect` walks the element headers of the encoded dataset instead: every element must fit in
the buffer, every undefined-length sequence / item / encapsulated pixel data must be closed, and the dataset
must end exactly at the buffer's end. A truncated or garbled dataset raises :class:`Undecodable`.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
MAX_DEPTH = 32
UID_CHARS = re.compile(r"[0-9.]+")
PIXEL_TAGS = {0x7FE00008, 0x7FE00009, 0x7FE00010}  # float / double float / pixel data

# tag -> attribute name; read only at the top level
WANTED = {
    0x00080016: "sop_class_uid",
    0x00080018: "sop_instance_uid",
    0x00080060: "modality",
    0x0020000D: "study_instance_uid",
    0x0020000E: "series_instance_uid",
}


class Undecodable(ValueError):
    """The dataset's encoding is broken (truncated, bad lengths, unterminated sequence, missing UIDs)."""


@dataclass(frozen=True)
class Header:
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str


class _Walker:
    def __init__(self, buf: bytes | memoryview, implicit: bool, little: bool):  # noqa: D107
        self.buf = buf
        self.n = len(buf)
        self.implicit = implicit
        e = "<" if little else ">"
        self.tag_fmt = struct.Struct(e + "HH")
        self.u16 = struct.Struct(e + "H")
        self.u32 = struct.Struct(e + "L")
        self.values: dict[int, bytes] = {}

    def _need(self, pos: int, size: int) -> None:
        if pos + size > self.n:
            raise Undecodable(f"dataset truncated at byte {pos} (needs {size} more, {self.n - pos} left)")

    def _tag(self, pos: int) -> int:
        self._need(pos, 4)
        group, elem = self.tag_fmt.unpack_from(self.buf, pos)
        return (group << 16) | elem

    def elements(self, pos: int, end: int, depth: int, top: bool = False, in_item: bool = False) -> int:
        """Walk elements from pos; stop at end, or after an Item Delimitation when in an undefined-length item."""
        if depth > MAX_DEPTH:
            raise Undecodable("sequences nested too deeply")
        while pos < end:
            tag = self._tag(pos)
            if tag == ITEM_END:
                self._need(pos, 8)
                if not in_item:
                    raise Undecodable(f"unexpected item delimiter at byte {pos}")
                return pos + 8
            if tag in (ITEM, SEQ_END):
                raise Undecodable(f"unexpected item tag {tag:08X} at byte {pos}")
            if self.implicit:
                self._need(pos, 8)
                vr = None
                length = self.u32.unpack_from(self.buf, pos + 4)[0]
                pos += 8
            else:
                self._need(pos, 8)
                vr = bytes(self.buf[pos + 4 : pos + 6])
                if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
                    raise Undecodable(f"invalid VR {vr!r} for ({tag >> 16:04X},{tag & 0xFFFF:04X}) at byte {pos}")
                if vr in LONG_VRS:
                    self._need(pos, 12)
                    length = self.u32.unpack_from(self.buf, pos + 8)[0]
                    pos += 12
                else:
                    length = self.u16.unpack_from(self.buf, pos + 6)[0]
                    pos += 8
            if length == UNDEFINED:
                if tag == 0x7FE00010 or vr in (b"OB", b"OW"):
                    pos = self._fragments(pos)
                    if top:
                        self.values[tag] = b""
                else:  # SQ, or UN / implicit with undefined length = a sequence
                    pos = self._items(pos, depth)
                continue
            self._need(pos, length)
            if top and tag in PIXEL_TAGS:
                self.values[tag] = b""
            if top and tag in WANTED:
                self.values[tag] = bytes(self.buf[pos : pos + length])
            pos += length
        if in_item:
            raise Undecodable("undefined-length item not terminated")
        if pos != end:
            raise Undecodable(f"element overruns its container by {pos - end} bytes")
        return pos

    def _items(self, pos: int, depth: int) -> int:
        while True:
            tag = self._tag(pos)
            self._need(pos, 8)
            length = self.u32.unpack_from(self.buf, pos + 4)[0]
            pos += 8
            if tag == SEQ_END:
                return pos
            if tag != ITEM:
                raise Undecodable(f"expected an item in a sequence at byte {pos - 8}, found {tag:08X}")
            if length == UNDEFINED:
                pos = self.elements(pos, self.n, depth + 1, in_item=True)
            else:
                self._need(pos, length)
                pos = self.elements(pos, pos + length, depth + 1)

    def _fragments(self, pos: int) -> int:
        while True:
            tag = self._tag(pos)
            self._need(pos, 8)
            length = self.u32.unpack_from(self.buf, pos + 4)[0]
            pos += 8
            if tag == SEQ_END:
                return pos
            if tag != ITEM or length == UNDEFINED:
                raise Undecodable(f"bad encapsulated pixel data fragment at byte {pos - 8}")
            self._need(pos, length)
            pos += length


def _text(raw: bytes | None) -> str:
    return raw.decode("ascii", "replace").strip("\0 ") if raw else ""


def inspect(dataset: bytes | memoryview, transfer_syntax: str, needs_pixels: bool = False) -> Header:
    """Validate the encoded dataset (no file meta) and read its identifying UIDs; raises Undecodable.

    ``needs_pixels``: the SOP class is an image, so a dataset without pixel data is a truncated one.
    """
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        try:
            dataset = zlib.decompress(bytes(dataset), -zlib.MAX_WBITS)
        except zlib.error as exc:
            raise Undecodable(f"deflate stream is corrupt: {exc}") from None
    implicit = transfer_syntax == ImplicitVRLittleEndian
    little = transfer_syntax != ExplicitVRBigEndian
    if len(dataset) == 0:
        raise Undecodable("empty dataset")
    walker = _Walker(dataset, implicit, little)
    walker.elements(0, len(dataset), 0, top=True)
    v = walker.values
    header = Header(
        sop_class_uid=_text(v.get(0x00080016)),
        sop_instance_uid=_text(v.get(0x00080018)),
        study_instance_uid=_text(v.get(0x0020000D)),
        series_instance_uid=_text(v.get(0x0020000E)),
        modality=_text(v.get(0x00080060)),
    )
    if needs_pixels and not PIXEL_TAGS & v.keys():
        raise Undecodable("image without pixel data (truncated?)")
    missing = [name for name in ("sop_class_uid", "sop_instance_uid", "study_instance_uid", "series_instance_uid")
               if not getattr(header, name)]
    if missing:
        raise Undecodable(f"missing {', '.join(missing)}")
    for name in ("sop_instance_uid", "study_instance_uid", "series_instance_uid"):
        uid = getattr(header, name)
        if len(uid) > 64 or not UID_CHARS.fullmatch(uid):
            raise Undecodable(f"{name} is not a valid UID")
    return header
