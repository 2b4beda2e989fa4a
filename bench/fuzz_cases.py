"""Hypothesis strategies for hostile input at each door of ``ldh serve`` (used by bench/fuzz.py and its smoke test).

- :func:`dimse_cases`: C-STORE data sets mutated from pydicom's real MR test files (a head, not a spine), and
  PDU-level attacks (garbage instead of an A-ASSOCIATE-RQ, bogus PDU/PDV lengths, abort mid-PDU, ...);
- :func:`upload_cases`: corrupt MHA/NIfTI headers, PNG and zip bombs, traversal and symlink zip entries, huge
  dimensions in tiny files, wrong content types;
- :func:`feedback_cases`: hostile feedback JSON;
- :func:`stow_cases`: STOW-RS requests (mutated Part 10 parts, non-DICOM parts, truncated bodies, wrong boundaries,
  content types, ``Accept`` headers and study UIDs).

Each case says which answers are acceptable; anything else (a 5xx, a dropped connection where a status was
owed, no answer in time) is a finding.
"""

from __future__ import annotations

import copy
import functools
import gzip
import io
import json
import struct
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field

import pydicom
from hypothesis import strategies as st
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info

from bench.raw_dicom import associate_rq, command, data_pdus
from dicom_node.parse import LONG_VRS
from dicom_node.upper_layer import HEADER, P_DATA, PDV_HEADER, p_data

SEED_FILES = ("MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
              "MR_small_jpeg_ls_lossless.dcm", "MR_small_padded.dcm", "MR_truncated.dcm")
ESCAPE = "ldh-fuzz-escaped"  # a zip member that lands outside the staging folder would carry this name
UPLOAD_OK = {200, 201, 202, 400, 413, 415, 422}
FEEDBACK_OK = {201, 400, 404, 409, 422}


# ---------------------------------------------------------------------------------------------- DICOM seeds
@dataclass(frozen=True)
class Seed:
    name: str
    dataset: pydicom.Dataset
    sop_class: str
    transfer_syntax: str

    def encode(self, sop_uid: str) -> bytes:
        """The data set (no file meta) in its transfer syntax, with fresh study/series/instance UIDs."""
        ds = copy.copy(self.dataset)
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID = fresh_uid(), fresh_uid()
        syntax = pydicom.uid.UID(self.transfer_syntax)
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = syntax.is_little_endian, syntax.is_implicit_VR
        write_dataset(fp, ds)
        return fp.getvalue()


def fresh_uid() -> str:
    """A unique UID of fixed length: hypothesis needs every example's data to have the same shape each time."""
    return f"2.25.{(1 << 127) | uuid.uuid4().int}"  # always 39 digits, no leading zero


@functools.cache
def seeds() -> tuple[Seed, ...]:
    from pydicom.data import get_testdata_file

    out = []
    for name in SEED_FILES:
        path = get_testdata_file(name)
        if path is None:
            continue
        ds = pydicom.dcmread(path, force=True)
        try:
            ds.PixelData  # noqa: B018 - MR_truncated ends inside its pixel data: keep what reads
        except Exception:  # noqa: BLE001
            del ds[0x7FE00010]
        out.append(Seed(name, ds, str(ds.file_meta.MediaStorageSOPClassUID), str(ds.file_meta.TransferSyntaxUID)))
    if not out:
        raise RuntimeError("pydicom's MR test files are missing")
    return tuple(out)


@dataclass(frozen=True)
class Element:
    offset: int  # where its header starts
    header: int  # header bytes (8 or 12)
    length: int
    vr_offset: int | None  # explicit VR only


def top_elements(data: bytes, syntax: str) -> list[Element]:
    """The top-level element headers of an encoded data set, up to the first undefined length or overrun."""
    uid = pydicom.uid.UID(syntax)
    e = "<" if uid.is_little_endian else ">"
    out, pos = [], 0
    while pos + 8 <= len(data):
        if uid.is_implicit_VR:
            header, vr_offset, length = 8, None, struct.unpack_from(e + "I", data, pos + 4)[0]
        elif data[pos + 4 : pos + 6] in LONG_VRS:
            if pos + 12 > len(data):
                break
            header, vr_offset, length = 12, pos + 4, struct.unpack_from(e + "I", data, pos + 8)[0]
        else:
            header, vr_offset, length = 8, pos + 4, struct.unpack_from(e + "H", data, pos + 6)[0]
        if length == 0xFFFFFFFF or pos + header + length > len(data):
            break
        out.append(Element(pos, header, length, vr_offset))
        pos += header + length
    return out


def _sequence(little: bool, depth: int, close: bool) -> bytes:
    """A (0040,0275) undefined-length sequence nested ``depth`` deep, its delimiters left off unless ``close``."""
    e = "<" if little else ">"
    item, item_end, seq_end = (struct.pack(e + "HHI", 0xFFFE, t, v) for t, v in
                               ((0xE000, 0xFFFFFFFF), (0xE00D, 0), (0xE0DD, 0)))
    # implicit VR encoding of the SQ header (an explicit-VR reader sees a wrong VR here: also hostile)
    head = struct.pack(e + "HHI", 0x0040, 0x0275, 0xFFFFFFFF)
    body = b""
    for _ in range(depth):
        body = head + item + body + ((item_end + seq_end) if close else b"")
    return body


@st.composite
def mutated_dataset(draw, data: bytes, seed: Seed) -> tuple[bytes, str]:
    """(bytes, what was done) after one to three structural or byte-level mutations."""
    out = bytearray(data)
    little = pydicom.uid.UID(seed.transfer_syntax).is_little_endian
    e = "<" if little else ">"
    done = []
    for _ in range(draw(st.integers(1, 3))):
        elements = top_elements(bytes(out), seed.transfer_syntax) if out else []
        op = draw(st.sampled_from(["truncate", "length", "vr", "flip", "insert", "delete", "sequence", "junk",
                                   "drop", "tag"]))
        if op in ("length", "vr", "drop", "tag") and not elements:
            op = "flip"
        if op == "truncate":
            out = out[: draw(st.integers(len(out) // 2, max(len(out) - 1, 0)) | st.integers(0, max(len(out) - 1, 0)))]
        elif op == "length":
            el = draw(st.sampled_from(elements))
            value = draw(st.sampled_from([0, 1, el.length + 1, el.length + 2, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFE,
                                          len(out) * 2]) | st.integers(0, 0xFFFFFFFF))
            if el.header == 12 or el.vr_offset is None:
                struct.pack_into(e + "I", out, el.offset + el.header - 4, value & 0xFFFFFFFF)
            else:
                struct.pack_into(e + "H", out, el.offset + 6, value & 0xFFFF)
        elif op == "vr":
            el = draw(st.sampled_from(elements))
            vr = draw(st.sampled_from([b"OB", b"SQ", b"UN", b"US", b"UL", b"ZZ", b"\0\0", b"ob", b"UT"]))
            pos = el.vr_offset if el.vr_offset is not None else el.offset + 4
            out[pos : pos + 2] = vr
        elif op == "flip" and out:
            for _ in range(draw(st.integers(1, 16))):
                pos = draw(st.integers(0, len(out) - 1))
                out[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            pos = draw(st.integers(0, len(out)))
            out[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete" and out:
            start = draw(st.integers(0, len(out) - 1))
            del out[start : start + draw(st.integers(1, 256))]
        elif op == "sequence":
            pos = draw(st.sampled_from([el.offset for el in elements] or [0]))
            out[pos:pos] = _sequence(little, draw(st.integers(1, 40)), draw(st.booleans()))
        elif op == "junk":
            out += draw(st.binary(min_size=1, max_size=512))
        elif op == "drop":
            el = draw(st.sampled_from(elements))
            del out[el.offset : el.offset + el.header + el.length]
        elif op == "tag":
            el = draw(st.sampled_from(elements))
            tag = draw(st.sampled_from([(0xFFFE, 0xE000), (0xFFFE, 0xE00D), (0xFFFE, 0xE0DD), (0x0000, 0x0000),
                                        (0xFFFF, 0xFFFF), (0x0002, 0x0010)]))
            struct.pack_into(e + "HH", out, el.offset, *tag)
        done.append(op)
    return bytes(out), "+".join(done)


@dataclass
class DimseCase:
    """One connection's worth of bytes. ``store``: a C-STORE whose answer must be a status (``sop`` is the
    command's SOP Instance UID, acknowledged when the status is 0x0000); otherwise ``expect`` lists the replies
    that are acceptable after ``raw`` is sent and the connection half-closed."""

    name: str
    seed: str = ""
    sop_class: str = ""
    transfer_syntax: str = ""
    sop: str = ""
    data: bytes = b""
    max_pdu: int = 65536
    command_sop: str = ""
    context_sop_class: str = ""
    associate: bool = False
    raw: bytes = b""
    expect: frozenset[str] = field(default_factory=frozenset)

    @property
    def store(self) -> bool:
        return bool(self.sop)

    def __repr__(self) -> str:
        return (f"DimseCase({self.name}, seed={self.seed}, ts={self.transfer_syntax}, data={len(self.data)} B, "
                f"raw={self.raw[:48]!r}... ({len(self.raw)} B), expect={sorted(self.expect)})")


MR = "1.2.840.10008.5.1.4.1.1.4"
CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
ANSWERED = frozenset({"abort", "reject"})
ANY_END = frozenset({"abort", "reject", "closed", "accepted"})


@st.composite
def store_case(draw) -> DimseCase:
    seed = draw(st.sampled_from(seeds()))
    sop = fresh_uid()
    data, ops = draw(mutated_dataset(seed.encode(sop), seed))
    variant = draw(st.sampled_from(["plain"] * 8 + ["other_uid", "other_class"]))
    return DimseCase(f"store:{ops}" + ("" if variant == "plain" else f":{variant}"), seed.name,
                     CT if variant == "other_class" else seed.sop_class, seed.transfer_syntax, sop, data,
                     max_pdu=draw(st.sampled_from([65536, 16384, 4096, 1024, 64, 16])),
                     command_sop=fresh_uid() if variant == "other_uid" else sop,
                     context_sop_class=seed.sop_class)


@st.composite
def pdu_case(draw) -> DimseCase:
    kind = draw(st.sampled_from(["garbage", "rq_mutated", "rq_truncated", "unknown_type", "rq_too_long",
                                 "pdata_too_long", "pdv_bad_length", "pdv_unknown_context", "data_first",
                                 "bad_command", "abort_mid_pdu", "short_length", "second_rq"]))
    rq = associate_rq(MR, EXPLICIT)
    store = p_data(1, command(0x0001, 1, MR, "1.2.3.4"), 65536) + data_pdus(b"\x08\x00\x18\x00UI\x08\x001.2.3.4\0",
                                                                           65536)
    if kind == "garbage":
        return DimseCase(kind, raw=draw(st.binary(min_size=1, max_size=2048)), expect=ANY_END)
    if kind == "rq_mutated":
        out = bytearray(rq)
        for _ in range(draw(st.integers(1, 12))):
            out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
        return DimseCase(kind, raw=bytes(out), expect=ANY_END)
    if kind == "rq_truncated":
        return DimseCase(kind, raw=rq[: draw(st.integers(1, len(rq) - 1))], expect=ANY_END - {"accepted"})
    if kind == "unknown_type":
        pdu_type = draw(st.sampled_from([0, *range(8, 256)]))
        return DimseCase(kind, raw=HEADER.pack(pdu_type, 4) + bytes(4), expect=frozenset({"abort"}))
    if kind == "rq_too_long":
        return DimseCase(kind, raw=HEADER.pack(1, draw(st.integers((1 << 20) + 1, 0xFFFFFFFF))) + rq[6:],
                         expect=frozenset({"abort"}))
    # the rest follow a valid association
    if kind == "pdata_too_long":
        raw = HEADER.pack(P_DATA, draw(st.integers((1 << 20) + 1, 0xFFFFFFFF))) + bytes(64)
    elif kind == "pdv_bad_length":
        body = PDV_HEADER.pack(draw(st.sampled_from([0, 1, 200, 0xFFFFFFFF])), 1, 0x03) + b"\0" * 16
        raw = HEADER.pack(P_DATA, len(body)) + body
    elif kind == "pdv_unknown_context":
        raw = store.replace(b"\x01\x03", bytes((draw(st.integers(2, 255)), 0x03)), 1)
    elif kind == "data_first":
        raw = data_pdus(b"\0" * 32, 65536)
    elif kind == "bad_command":
        raw = p_data(1, draw(st.binary(min_size=1, max_size=256)), 65536)
    elif kind == "second_rq":
        raw = rq
    elif kind == "abort_mid_pdu":
        cut = store[: draw(st.integers(1, len(store) - 1))]
        tail = draw(st.sampled_from([b"", HEADER.pack(7, 4) + bytes(4)]))
        # an A-ABORT sent inside the last PDU's declared length is that PDU's payload, not an abort: the data set
        # then arrives complete (and garbled), and a C-STORE status is the right answer
        completes = len(cut) + len(tail) >= len(store)
        return DimseCase(kind, associate=True, raw=cut + tail,
                         expect=frozenset({"abort", "closed"} | ({"status"} if completes else set())))
    else:  # short_length: the PDU says less than what follows; the rest is read as the next PDU
        raw = HEADER.pack(P_DATA, draw(st.integers(6, 40))) + store[6:]
    return DimseCase(kind, associate=True, raw=raw, expect=frozenset({"abort"}))


def dimse_cases() -> st.SearchStrategy[DimseCase]:
    return st.one_of(store_case(), store_case(), pdu_case())


# ---------------------------------------------------------------------------------------------- uploads
@dataclass
class UploadCase:
    name: str
    files: list[tuple[str, bytes]]
    multipart: bool = True
    content_type: str | None = None  # raw bodies; None: let the client choose
    filename: str | None = None

    def __repr__(self) -> str:
        return (f"UploadCase({self.name}, files={[(n, len(b)) for n, b in self.files]}, "
                f"multipart={self.multipart}, content_type={self.content_type!r}, filename={self.filename!r})")


MHA_FIELDS = {
    "NDims": ["0", "-1", "2", "4", "99", "3.5", "x", ""],
    "DimSize": ["100000 100000 100000", "0 0 0", "-1 8 8", "8 8", "a b c", "1e9 1 1", "4294967297 1 1",
                "65536 65536 64", "8 8 4 4"],
    "ElementType": ["MET_FOO", "MET_DOUBLE", "MET_UCHAR", "", "MET_SHORT_ARRAY"],
    "ElementSpacing": ["0 0 0", "-1 1 1", "nan nan nan", "1e308 1 1", "inf 1 1", "x", "1 1"],
    "ElementDataFile": ["../../etc/passwd", "/etc/passwd", "LIST", "LOCAL", "image.raw", "%s.raw 1 9 1"],
    "CompressedData": ["True", "true", "False", "maybe"],
    "CompressedDataSize": ["0", "-5", "99999999999", "x"],
    "ElementNumberOfChannels": ["0", "-3", "x", "1000000", "2"],
    "TransformMatrix": ["1 0 0 0 1 0 0 0 1", "0 0 0 0 0 0 0 0 0", "nan 0 0 0 1 0 0 0 1", "1 2"],
    "HeaderSize": ["-1", "1000000000", "x"],
    "BinaryDataByteOrderMSB": ["True", "x"],
}
MHA_BASE = {"ObjectType": "Image", "NDims": "3", "DimSize": "8 8 4", "ElementType": "MET_SHORT",
            "ElementSpacing": "1 1 4", "ElementDataFile": "LOCAL"}


@st.composite
def mha_file(draw) -> tuple[str, bytes, str]:
    fields = dict(MHA_BASE)
    for key in draw(st.lists(st.sampled_from(sorted(MHA_FIELDS)), min_size=1, max_size=4, unique=True)):
        fields[key] = draw(st.sampled_from(MHA_FIELDS[key]))
    for key in draw(st.lists(st.sampled_from(sorted(MHA_BASE)), max_size=2, unique=True)):
        if draw(st.booleans()):
            del fields[key]
    data_file = fields.pop("ElementDataFile", None)  # ElementDataFile ends a MetaImage header
    lines = [f"{k} = {v}" for k, v in fields.items()] + ([f"ElementDataFile = {data_file}"] if data_file else [])
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["garbage line", "= x", "\0\0\0"])))
    pixels = draw(st.sampled_from(["exact", "short", "long", "none", "zlib", "zlib_bomb"]))
    raw = bytes(8 * 8 * 4 * 2)
    body = {"exact": raw, "short": raw[:37], "long": raw * 3, "none": b"", "zlib": zlib.compress(raw),
            "zlib_bomb": bombs()["zlib"]}[pixels]
    return "volume.mha", ("\n".join(lines) + "\n").encode("latin-1") + body, f"mha:{pixels}"


@functools.cache
def nifti_base() -> bytes:
    """A valid 8x8x4 NIfTI-1 file written by SimpleITK."""
    import tempfile
    from pathlib import Path

    import numpy as np
    import SimpleITK as sitk

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.nii"
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 8, 8), np.int16)), str(path))
        return path.read_bytes()


NIFTI_FIELDS = {  # offset, struct format, hostile values
    "sizeof_hdr": (0, "<i", [0, -1, 540, 1 << 30]),
    "dim0": (40, "<h", [0, -1, 8, 7, 2, 100]),
    "dim1": (42, "<h", [0, -1, 32767, 1]),
    "dim2": (44, "<h", [0, -1, 32767, 1]),
    "dim3": (46, "<h", [0, -1, 32767, 1]),
    "datatype": (70, "<h", [0, 1, 3, 2048, 1536, -1, 32767]),
    "bitpix": (72, "<h", [0, 1, 7, 128, -8]),
    "pixdim1": (80, "<f", [0.0, -1.0, float("nan"), float("inf"), 1e38]),
    "pixdim3": (88, "<f", [0.0, -4.0, float("nan")]),
    "vox_offset": (108, "<f", [0.0, -352.0, 1e9, float("nan"), 351.0]),
    "scl_slope": (112, "<f", [0.0, float("nan"), float("inf")]),
    "qform_code": (252, "<h", [0, 1, 2, 99, -1]),
    "sform_code": (254, "<h", [0, 1, 99]),
    "quatern_b": (256, "<f", [float("nan"), 2.0, -5.0]),
    "srow_x0": (280, "<f", [float("nan"), 0.0, 1e38]),
}


@st.composite
def nifti_file(draw) -> tuple[str, bytes, str]:
    out = bytearray(nifti_base())
    names = draw(st.lists(st.sampled_from(sorted(NIFTI_FIELDS)), min_size=1, max_size=4, unique=True))
    for name in names:
        offset, fmt, values = NIFTI_FIELDS[name]
        struct.pack_into(fmt, out, offset, draw(st.sampled_from(values)))
    if draw(st.booleans()):
        out[344:348] = draw(st.sampled_from([b"n+2\0", b"ni1\0", b"\0\0\0\0", b"n+1\0"]))
    if draw(st.booleans()):
        out = out[: draw(st.integers(0, len(out)))]
    if draw(st.booleans()):
        return "volume.nii.gz", gzip.compress(bytes(out)), "nifti.gz:" + ",".join(names)
    if draw(st.booleans()):
        return "volume.nii.gz", bombs()["gzip"], "nifti.gz:bomb"
    return "volume.nii", bytes(out), "nifti:" + ",".join(names)


def _png(width: int, height: int, idat: bytes, bit_depth: int = 8, color: int = 0) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@functools.cache
def bombs() -> dict[str, bytes]:
    """Small files that expand enormously: built once (a few seconds), reused by every case."""
    side = 20000  # 400 M pixels: a tiny PNG that decodes to 400 MB (1.6 GB as float32)
    comp = zlib.compressobj(9)
    row = bytes(side + 1)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    zeros = bytes(1 << 20)
    comp = zlib.compressobj(9)
    big = b"".join(comp.compress(zeros) for _ in range(1024)) + comp.flush()  # 1 GiB of zeros
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", compresslevel=9) as fh:
        for _ in range(1024):
            fh.write(zeros)
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.dcm", "w", force_zip64=True) as m:
        for _ in range(1024):
            m.write(zeros)
    return {"png": _png(side, side, idat), "zlib": big, "gzip": gz.getvalue(), "zip": zbuf.getvalue()}


@st.composite
def png_files(draw) -> tuple[list[tuple[str, bytes]], str]:
    kind = draw(st.sampled_from(["bomb", "huge_header", "truncated", "bad_crc", "bad_depth", "mixed_sizes"]))
    small = _png(16, 16, zlib.compress(bytes(17 * 16)))
    if kind == "bomb":
        first = bombs()["png"]
    elif kind == "huge_header":
        first = _png(draw(st.sampled_from([0, 1 << 31, 0xFFFFFFFF, 65535, 100000])), 1 << 16,
                     zlib.compress(b"\0" * 64))
    elif kind == "truncated":
        first = small[: draw(st.integers(8, len(small) - 1))]
    elif kind == "bad_crc":
        first = small[:29] + b"\0\0\0\0" + small[33:]
    elif kind == "bad_depth":
        first = _png(16, 16, zlib.compress(bytes(17 * 16)), bit_depth=draw(st.sampled_from([0, 3, 7, 32])),
                     color=draw(st.sampled_from([0, 1, 5, 255])))
    else:
        first = _png(32, 8, zlib.compress(bytes(33 * 8)))
    ext = draw(st.sampled_from([".png", ".PNG", ".jpg"]))
    return [(f"slice{i:03d}{ext}", first if i == 0 else small) for i in range(draw(st.integers(2, 4)))], f"png:{kind}"


@st.composite
def zip_file(draw) -> tuple[str, bytes, str]:
    kind = draw(st.sampled_from(["traversal", "absolute", "symlink", "bomb", "liar", "corrupt", "empty", "nested",
                                 "dotnames"]))
    if kind == "bomb":
        return "series.zip", bombs()["zip"], "zip:bomb"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if kind == "traversal":
            zf.writestr(f"../../../{ESCAPE}.dcm", b"x" * 200)
            zf.writestr(f"a/../../{ESCAPE}-2.png", b"y" * 200)
        elif kind == "absolute":
            zf.writestr(f"/tmp/{ESCAPE}.dcm", b"x" * 200)
        elif kind == "symlink":
            info = zipfile.ZipInfo(f"{ESCAPE}-link.dcm")
            info.external_attr = 0o120777 << 16
            zf.writestr(info, draw(st.sampled_from(["/etc/passwd", "../../../../etc/shadow", "."])))
        elif kind in ("liar", "corrupt"):
            zf.writestr("zeros.dcm", bytes(1 << 22))
        elif kind == "nested":
            inner = io.BytesIO()
            with zipfile.ZipFile(inner, "w") as z2:
                z2.writestr("a.dcm", b"DICM" * 10)
            zf.writestr("inner.zip", inner.getvalue())
        elif kind == "dotnames":
            zf.writestr("..", b"a" * 50)
            zf.writestr("...", b"b" * 50)
            zf.writestr("./.hidden.dcm", b"c" * 50)
    data = bytearray(buf.getvalue())
    if kind == "liar":  # the headers claim 100 bytes; the deflate stream holds 4 MiB
        for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
            pos = data.find(sig)
            struct.pack_into("<I", data, pos + off, 100)
    elif kind == "corrupt":
        for _ in range(draw(st.integers(1, 20))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return "series.zip", bytes(data), f"zip:{kind}"


@st.composite
def dicom_files(draw) -> tuple[list[tuple[str, bytes]], str]:
    seed = draw(st.sampled_from(seeds()))
    out, ops = [], []
    for i in range(draw(st.integers(1, 3))):
        sop = fresh_uid()
        data, op = draw(mutated_dataset(seed.encode(sop), seed))
        meta = pydicom.Dataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = seed.sop_class, sop
        meta.TransferSyntaxUID = seed.transfer_syntax
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_file_meta_info(fp, meta)
        out.append((f"IM{i:04d}.dcm", b"\0" * 128 + b"DICM" + fp.getvalue() + data))
        ops.append(op)
    return out, "dicom:" + ",".join(ops)


CONTENT_TYPES = ["application/octet-stream", "application/zip", "image/png", "application/dicom", "text/plain",
                 "multipart/form-data", "multipart/form-data; boundary=nothere", "application/json", ""]
FILENAMES = ["volume.mha", "../../volume.mha", "x.nii.gz", "noext", "." * 300, "a b;c=d.png", "series.zip", ""]


@st.composite
def upload_cases(draw) -> UploadCase:
    kind = draw(st.sampled_from(["mha", "mha", "nifti", "nifti", "png", "zip", "zip", "dicom", "raw"]))
    if kind == "mha":
        name, data, what = draw(mha_file())
        files = [(name, data)]
    elif kind == "nifti":
        name, data, what = draw(nifti_file())
        files = [(name, data)]
    elif kind == "png":
        files, what = draw(png_files())
    elif kind == "zip":
        name, data, what = draw(zip_file())
        files = [(name, data)]
    elif kind == "dicom":
        files, what = draw(dicom_files())
    else:
        body = draw(st.one_of(st.binary(max_size=4096), st.sampled_from([b"", b"DICM", b"\x89PNG\r\n\x1a\n",
                                                                          b"PK\x03\x04" + bytes(40)])))
        return UploadCase("raw", [("body", body)], multipart=False,
                          content_type=draw(st.sampled_from(CONTENT_TYPES)), filename=draw(st.sampled_from(FILENAMES)))
    if len(files) == 1 and draw(st.integers(0, 4)) == 0:  # the same file as a raw body, any content type
        return UploadCase(f"raw:{what}", files, multipart=False, content_type=draw(st.sampled_from(CONTENT_TYPES)),
                          filename=draw(st.sampled_from([files[0][0], *FILENAMES])))
    return UploadCase(what, files)


# ---------------------------------------------------------------------------------------------- feedback
@dataclass
class FeedbackCase:
    name: str
    body: bytes
    content_type: str = "application/json"
    study: str | None = None  # None: the analysed study

    def __repr__(self) -> str:
        return f"FeedbackCase({self.name}, body={self.body[:120]!r} ({len(self.body)} B), ctype={self.content_type!r}, " \
               f"study={self.study!r})"


LEVELS = ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
)
ints = st.one_of(st.integers(-5, 600), st.sampled_from([-(2**63), 2**63, 2**64 + 1, 10**30]))


@st.composite
def box(draw) -> dict:
    out = {"level": draw(st.sampled_from(LEVELS) | st.text(max_size=10) | st.none() | st.integers()),
           "slice_index": draw(ints | st.text(max_size=4) | st.floats()),
           "box": draw(st.lists(ints, min_size=0, max_size=6) | st.just("0,0,1,1")),
           "herniation": draw(st.booleans() | st.integers(-2, 2) | st.sampled_from(["yes", "", None]))}
    if draw(st.booleans()):
        out["ai_level"] = draw(st.sampled_from([*LEVELS, None, "L9-L10", 3]))
    if draw(st.integers(0, 5)) == 0:
        out[draw(st.text(min_size=1, max_size=8))] = draw(json_values)
    return out


@st.composite
def feedback_cases(draw) -> FeedbackCase:
    kind = draw(st.sampled_from(["structured", "structured", "structured", "any_json", "raw", "deep", "ctype",
                                 "study"]))
    if kind == "structured":
        body: object = {"action": draw(st.sampled_from(["accept", "corrections", "", "ACCEPT", 1, None]))}
        if draw(st.booleans()):
            body["corrections"] = draw(st.lists(box(), max_size=8) | st.none() | json_values)
        if draw(st.booleans()):
            body["comment"] = draw(st.text(max_size=2100) | st.integers())
        return FeedbackCase(kind, json.dumps(body).encode())
    if kind == "any_json":
        return FeedbackCase(kind, json.dumps(draw(json_values)).encode())
    if kind == "raw":
        return FeedbackCase(kind, draw(st.binary(max_size=512) | st.sampled_from(
            [b"", b"{", b'{"action": NaN}', b'{"action": "accept", "action": "corrections"}',
             b'{"action": 1e999999}', b"\xef\xbb\xbf{\"action\": \"accept\"}", '{"action": "accept"}'.encode("utf-16"),
             b'{"action": "corrections", "corrections": [{"level": "L4-L5", "slice_index": 1e400}]}'])))
    if kind == "deep":
        n = draw(st.sampled_from([100, 1000, 10000, 100000]))
        wrapper = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return FeedbackCase(kind, (wrapper[0] * n + "1" + wrapper[1] * n).encode())
    if kind == "ctype":
        return FeedbackCase(kind, b'{"action": "accept"}', content_type=draw(st.sampled_from(
            ["text/plain", "application/x-www-form-urlencoded", "", "multipart/form-data; boundary=x",
             "application/json; charset=utf-16"])))
    return FeedbackCase(kind, b'{"action": "accept"}', study=draw(st.sampled_from(
        ["1.2.3", "..", "%2e%2e%2f%2e%2e", "a" * 300, "1.2.840.10008.5.1.4.1.1.4", "%00", "x;y"])))


# ---------------------------------------------------------------------------------------------- STOW-RS
@dataclass
class StowCase:
    """One ``POST /dicomweb/studies[/{study}]``: ``body`` under ``content_type`` (every instance the response
    says was stored must be in the inbox after the run)."""

    name: str
    body: bytes
    content_type: str
    accept: str | None = None
    study: str | None = None

    def __repr__(self) -> str:
        return (f"StowCase({self.name}, body={len(self.body)} B, ctype={self.content_type!r}, accept={self.accept!r}, "
                f"study={self.study!r})")


STOW_OK = {200, 202, 400, 404, 406, 409, 413, 415}  # 404: a study path the client normalised (/studies/..)
STOW_BOUNDARY = "ldh-fuzz-boundary"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={STOW_BOUNDARY}'


def multipart_related(parts: list[tuple[str, bytes]], boundary: str = STOW_BOUNDARY) -> bytes:
    out = b"".join(f"--{boundary}\r\nContent-Type: {media}\r\n\r\n".encode() + data + b"\r\n" for media, data in parts)
    return out + f"--{boundary}--\r\n".encode()


@st.composite
def stow_cases(draw) -> StowCase:
    kind = draw(st.sampled_from(["parts", "parts", "parts", "truncated", "boundary", "ctype", "accept", "study",
                                 "garbage"]))
    files, ops = draw(dicom_files())  # mutated Part 10 instances (some still valid)
    parts = [("application/dicom", b) for _, b in files]
    if kind == "parts" and draw(st.booleans()):  # a non-DICOM part, or a part with another media type
        parts.insert(draw(st.integers(0, len(parts))), draw(st.sampled_from(
            [("application/dicom", draw(st.binary(max_size=512))), ("application/dicom+json", b"{}"),
             ("image/png", b"\x89PNG\r\n\x1a\n"), ("application/dicom", b"")])))
    body = multipart_related(parts)
    ctype, accept, study = STOW_TYPE, None, None
    if kind == "truncated":
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif kind == "boundary":
        body = body.replace(STOW_BOUNDARY.encode(), draw(st.sampled_from([b"other", b"", b"ldh-fuzz"])),
                            draw(st.integers(1, 3)))
    elif kind == "ctype":
        ctype = draw(st.sampled_from(["multipart/related", "multipart/related; type=\"application/dicom\"",
                                      f"multipart/form-data; boundary={STOW_BOUNDARY}", "application/dicom", "",
                                      f"multipart/related; type=\"application/dicom+json\"; boundary={STOW_BOUNDARY}",
                                      f"multipart/related; type=application/dicom; boundary=\"{STOW_BOUNDARY}\""]))
    elif kind == "accept":
        accept = draw(st.sampled_from(["application/dicom+xml", "text/html", "application/json;q=0", "*/*;q=x",
                                       "application/dicom+json;q=0.1, application/dicom+xml", ",,,"]))
    elif kind == "study":
        study = draw(st.sampled_from(["1.2.3", "..", "a" * 80, "1.2.840.10008.5.1.4.1.1.4", "1..2", "%2e%2e"]))
    elif kind == "garbage":
        body = draw(st.binary(max_size=2048))
    return StowCase(f"{kind}:{ops}", body, ctype, accept, study)
