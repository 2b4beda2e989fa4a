"""Every bad input is a 4xx with a precise message, leaves nothing half-written, and the service keeps serving."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from api_support import R, client_for, phantom, png_files, settings_for, stored_files, upload_mha

AREAS = ("studies", "results", "feedback", "tmp")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data = tmp_path_factory.mktemp("bad-data")
    with client_for(settings_for(data, api_max_upload_mb=64)) as client:
        yield client, data


def _png(shape, value=100) -> bytes:
    ok, buf = cv2.imencode(".png", np.full(shape, value, np.uint8))
    assert ok
    return buf.tobytes()


def _mha_bytes(array: np.ndarray, spacing, direction=None, suffix: str = ".mha") -> bytes:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    if direction is not None:
        image.SetDirection(direction)
    path = phantom()[1].parent / f"tmp-{abs(hash((array.shape, spacing, direction)))}{suffix}"
    sitk.WriteImage(image, str(path))
    data = path.read_bytes()
    path.unlink()
    return data


def _corrupt_mha() -> bytes:
    raw = (phantom()[1] / "image.mha").read_bytes()
    return raw[: len(raw) // 3]  # header intact, pixel data truncated


def _axial_mha() -> bytes:
    return _mha_bytes(np.zeros((24, 96, 96), np.int16), (0.8, 0.8, 4.0))  # identity direction: axial slices


def _non_spine_mha() -> bytes:
    rng = np.random.default_rng(5)
    blobs = ndimage.gaussian_filter(rng.random((12, 128, 128)), (0, 6, 6)) * 4000
    return _mha_bytes(blobs.astype(np.int16), (1.5, 1.5, 4.0), (0, 0, -1, 1, 0, 0, 0, -1, 0))


def _zip_with_broken_member() -> bytes:
    """A well-formed zip (deflate) whose member's compressed bytes were overwritten: found by bench.fuzz (was 500)."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", bytes(range(256)) * 64)
    raw = bytearray(buf.getvalue())
    start = 30 + len("a.dcm")  # local header + name: the deflate stream begins here
    raw[start : start + 40] = b"\xff" * 40
    return bytes(raw)


def _nifti_spacing(spacing) -> bytes:
    """A 12-slice sagittal NIfTI (random texture) with ``spacing`` (x, y, z) mm in its header."""
    rng = np.random.default_rng(3)
    return _mha_bytes((rng.random((12, 64, 64)) * 1000).astype(np.int16), spacing, (0, 0, -1, 1, 0, 0, 0, -1, 0),
                      suffix=".nii")


def _dicom_series(**header) -> list:
    """The phantom's DICOM series with ``header`` values set in every instance (pixel data unchanged)."""
    import pydicom

    files = []
    for path in sorted((phantom()[1] / "dicom").iterdir()):
        ds = pydicom.dcmread(path)
        for key, value in header.items():
            setattr(ds, key, value)
        buf = io.BytesIO()
        ds.save_as(buf)
        files.append(("files", (path.name, buf.getvalue(), "application/dicom")))
    return files


def _zip_patched(where: str) -> bytes:
    """A one-member zip whose directory puts the member before the file's start (``offset``: zipfile's seek failed
    with EINVAL) or whose local name is flagged UTF-8 but is not (``name``: UnicodeDecodeError). Both were 500s
    found by bench.fuzz."""
    import io
    import struct
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", bytes(4096))
    raw = bytearray(buf.getvalue())
    if where == "offset":
        end = raw.find(b"PK\x05\x06")
        struct.pack_into("<I", raw, end + 16, struct.unpack_from("<I", raw, end + 16)[0] + 100)
    else:
        struct.pack_into("<H", raw, 6, struct.unpack_from("<H", raw, 6)[0] | 0x800)
        raw[31] = 0xB1
    return bytes(raw)


def _huge_png_header(width: int = 65535, height: int = 65536) -> bytes:
    """A PNG whose IHDR claims 65535 x 65536 pixels with a few bytes of data (found by bench.fuzz: OpenCV's pixel
    limit raised inside imread, a 500)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _mha_header(**fields: str) -> bytes:
    """A MetaImage header (8x8x4 shorts, their pixel bytes after it) with ``fields`` replaced: found by bench.fuzz
    (a DimSize that is not integers was a ValueError, a 500)."""
    header = {"ObjectType": "Image", "NDims": "3", "DimSize": "8 8 4", "ElementType": "MET_SHORT", **fields}
    header["ElementDataFile"] = header.pop("ElementDataFile", "LOCAL")  # it ends the header
    return "".join(f"{k} = {v}\n" for k, v in header.items()).encode() + bytes(8 * 8 * 4 * 2)


def _nifti(dim1: int = 8, keep: int | None = None) -> bytes:
    """An 8x8x4 NIfTI-1 (gzipped) whose header says ``dim1`` columns, cut to ``keep`` bytes before gzip: found by
    bench.fuzz (32767 columns over 512 pixel bytes was read as zeros into 32767 slices, a 120 s hang)."""
    import gzip
    import struct

    path = phantom()[1].parent / "tmp-fuzz.nii"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 8, 8), np.int16)), str(path))
    raw = bytearray(path.read_bytes())
    path.unlink()
    struct.pack_into("<h", raw, 42, dim1)
    return gzip.compress(bytes(raw[:keep]))


CASES = {
    "non-image file": (lambda: [("files", ("notes.txt", b"this is a text file, not an image", "text/plain"))],
                       415, "notes.txt is not a DICOM, MHA/NIfTI, PNG or JPG file"),
    "zero bytes": (lambda: [("files", ("image.mha", b"", "application/octet-stream"))], 400, "image.mha is empty (0 bytes)"),
    "corrupted MHA": (lambda: [("files", ("broken.mha", _corrupt_mha(), "application/octet-stream"))], 422,
                      "broken.mha could not be read as an MHA/NIfTI volume"),
    "PNG set with mixed sizes": (lambda: [("files", (f"s_{i:02d}.png", _png((64, 64) if i != 3 else (64, 48)), "image/png"))
                                          for i in range(6)], 422, "slices have different sizes"),
    "single 2D image": (lambda: [("files", ("slice_007.png", _png((64, 64)), "image/png"))], 422,
                        "slice_007.png is a single 2D image"),
    "axial series": (lambda: [("files", ("axial.mha", _axial_mha(), "application/octet-stream"))], 422,
                     "not a sagittal series"),
    "non-spine series": (lambda: [("files", ("blobs.mha", _non_spine_mha(), "application/octet-stream"))], 422,
                         "no lumbar spine was found"),
    "corrupt zip": (lambda: [("files", ("series.zip", b"PK\x03\x04" + b"\0" * 60, "application/zip"))], 422,
                    "series.zip is a corrupt or unsupported zip file"),
    "zip whose member does not inflate": (lambda: [("files", ("series.zip", _zip_with_broken_member(), "application/zip"))],
                                          422, "series.zip is a corrupt or unsupported zip file"),
    "zip whose member starts before the file": (
        lambda: [("files", ("series.zip", _zip_patched("offset"), "application/zip"))], 422,
        "series.zip is a corrupt or unsupported zip file (member 0 starts at byte -100"),
    "zip whose member name is flagged UTF-8 but is not": (
        lambda: [("files", ("series.zip", _zip_patched("name"), "application/zip"))], 422,
        "series.zip is a corrupt or unsupported zip file ('utf-8' codec can't decode"),
    "PNG header claiming 65535x65536 pixels": (lambda: [("files", (f"s_{i:02d}.png", _png((64, 64)) if i else
                                                                   _huge_png_header(), "image/png")) for i in range(4)],
                                               422, "s_00.png claims more pixels than"),
    "PNG header claiming 9000x64 pixels": (lambda: [("files", (f"s_{i:02d}.png", _png((64, 64)) if i else
                                                              _huge_png_header(9000, 64), "image/png")) for i in range(4)],
                                           422, "s_00.png claims 9000x64 pixels"),
    "MHA header with a non-numeric DimSize": (lambda: [("files", ("dims.mha", _mha_header(DimSize="a b c"),
                                                                   "application/octet-stream"))], 422,
                                              "dims.mha has a corrupt MetaImage header (DimSize 'a b c'"),
    "MHA header with a DimSize in floats": (lambda: [("files", ("dims.mha", _mha_header(DimSize="1e9 1 1"),
                                                                 "application/octet-stream"))], 422,
                                            "dims.mha has a corrupt MetaImage header (DimSize '1e9 1 1'"),
    "MHA header with fewer sizes than NDims": (lambda: [("files", ("dims.mha", _mha_header(DimSize="8 8"),
                                                                    "application/octet-stream"))], 422,
                                               "dims.mha has a corrupt MetaImage header (DimSize '8 8'"),
    "MHA header with a non-numeric channel count": (
        lambda: [("files", ("ch.mha", _mha_header(ElementNumberOfChannels="x"), "application/octet-stream"))], 422,
        "ch.mha has a corrupt MetaImage header (ElementNumberOfChannels 'x'"),
    "compressed MHA claiming a million channels": (  # found by bench.fuzz: ITK allocated 488 MiB before failing
        lambda: [("files", ("ch.mha", _mha_header(CompressedData="True", ElementNumberOfChannels="1000000"),
                            "application/octet-stream"))], 422, "ch.mha is not a 3D single-channel volume"),
    "MHA whose pixel file is a name pattern": (
        lambda: [("files", ("pat.mha", _mha_header(CompressedData="true", ElementDataFile="%s.raw 1 9 1"),
                            "application/octet-stream"))], 422,
        "pat.mha names its pixel data '%s.raw 1 9 1'"),  # found by bench.fuzz: ITK crashed the service (SIGSEGV)
    "MHA whose pixel file is outside the upload": (
        lambda: [("files", ("out.mha", _mha_header(ElementDataFile="../../etc/passwd"), "application/octet-stream"))],
        422, "out.mha names its pixel data '../../etc/passwd'"),
    "NIfTI header claiming 32767 x 8 x 4 voxels": (
        lambda: [("files", ("big.nii.gz", _nifti(dim1=32767), "application/octet-stream"))], 422,
        "big.nii.gz claims 32767 x 8 x 4 voxels"),
    "truncated NIfTI": (lambda: [("files", ("short.nii.gz", _nifti(keep=600), "application/octet-stream"))], 422,
                        "short.nii.gz is truncated"),
    "NIfTI with 1e38 mm pixels": (  # found by bench.fuzz: analysed, then int(NaN) in the job, an internal error
        lambda: [("files", ("far.nii", _nifti_spacing((1e38, 0.8, 4.0)), "application/octet-stream"))], 422,
        "far.nii has a voxel spacing of 1e+38 x 0.8 x 4 mm"),
    "NIfTI with 0.001 mm slices": (
        lambda: [("files", ("thin.nii", _nifti_spacing((0.8, 0.8, 0.001)), "application/octet-stream"))], 422,
        "thin.nii has a voxel spacing of 0.8 x 0.8 x 0.001 mm"),
    "DICOM header claiming 4000x4000 pixels": (  # checked before decoding (a bomb in RLE/JPEG would allocate)
        lambda: _dicom_series(Rows=4000, Columns=4000), 422, "the DICOM series claims"),
    "DICOM series with NaN pixel spacing": (  # found by bench.fuzz: analysed, then int(NaN), an internal error
        lambda: _dicom_series(PixelSpacing=["nan", "nan"]), 422, "the DICOM series has a voxel spacing of nan x nan"),
    "volume mixed with slices": (lambda: [("files", ("a.mha", b"ObjectType = Image\n", "application/octet-stream")),
                                          ("files", ("b.png", _png((8, 8)), "image/png"))], 422,
                                 "mixes a volume file with other files"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_upload_is_refused_precisely_and_leaves_nothing(env, name):
    client, data = env
    make, status, message = CASES[name]
    before = stored_files(data, *AREAS)
    r = client.post("/api/studies?wait=120", headers=R, files=make())
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    assert stored_files(data, *AREAS) == before  # nothing half-written
    assert client.get("/healthz").status_code == 200


def test_empty_body_is_refused(env):
    client, data = env
    r = client.post("/api/studies?filename=x.mha", headers={**R, "Content-Type": "application/octet-stream"},
                    content=b"")
    assert r.status_code == 400 and "empty" in r.json()["detail"]
    assert stored_files(data, "tmp") == []


def test_a_multipart_upload_cut_before_its_closing_boundary_is_refused(env):
    """A body cut short would leave its last file truncated: refused, not analysed."""
    client, data = env
    import httpx

    request = httpx.Request("POST", "http://127.0.0.1/", files=png_files(phantom()[1] / "png"))
    cut = request.read()[:-200]
    before = stored_files(data, *AREAS)
    r = client.post("/api/studies", content=cut, headers={**R, "Content-Type": request.headers["content-type"]})
    assert r.status_code == 400 and "closing boundary" in r.json()["detail"]
    assert stored_files(data, *AREAS) == before


def test_file_names_beyond_latin_1_are_accepted(env):
    """Browsers send a file name as UTF-8 bytes, which need not be Latin-1."""
    client, _ = env
    files = [("files", (f"腰椎_{name}", content, kind))
             for _, (name, content, kind) in png_files(phantom()[1] / "png")]
    r = client.post("/api/studies", headers=R, files=files)
    assert r.status_code in (200, 202), r.text


def test_upload_over_the_size_limit_is_refused_while_streaming(tmp_path):
    with client_for(settings_for(tmp_path, api_max_upload_mb=1)) as client:
        big = io.BytesIO(b"\0" * (2 * 1024 * 1024 + 10))
        r = client.post("/api/studies", headers=R, files={"files": ("big.mha", big, "application/octet-stream")})
        assert r.status_code == 413 and "exceeds the limit of 1 MiB" in r.json()["detail"]

        def chunks():  # no Content-Length: the limit is enforced on the bytes as they arrive
            for _ in range(3):
                yield b"\0" * (1024 * 1024)

        r = client.post("/api/studies?filename=big.mha", headers={**R, "Content-Type": "application/octet-stream"},
                        content=chunks())
        assert r.status_code == 413 and "exceeds the limit of 1 MiB" in r.json()["detail"]
        assert stored_files(tmp_path, *AREAS) == []
        # still serving: a good upload right after
        assert client.get("/readyz").status_code == 200


def test_too_many_files_is_refused(tmp_path):
    with client_for(settings_for(tmp_path, api_max_upload_files=3)) as client:
        r = client.post("/api/studies", headers=R,
                        files=[("files", (f"s{i}.png", _png((8, 8)), "image/png")) for i in range(5)])
        assert r.status_code == 413 and "more than 3 files" in r.json()["detail"]
        assert stored_files(tmp_path, *AREAS) == []


def test_bad_spacing_field_is_refused(env):
    client, _ = env
    r = client.post("/api/studies", headers=R, files=png_files(phantom()[1] / "png")[:4],
                    data={"pixel_spacing_mm": "abc"})
    assert r.status_code == 422 and "pixel_spacing_mm must be a number" in r.json()["detail"]


@pytest.fixture(scope="module")
def analysed(env):
    client, _ = env
    r = upload_mha(client, phantom()[1] / "image.mha")
    assert r.status_code == 201, r.text
    study = r.json()["study_instance_uid"]
    return study, client.get(f"/api/studies/{study}/findings", headers=R).json()


def _one(findings, **change):
    d = findings["discs"][0]
    box = {"level": d["level"], "slice_index": d["slice_index"], "box": d["box"], "herniation": d["herniation"],
           "ai_level": d["level"]}
    box.update(change)
    return {"action": "corrections", "corrections": [box]}


FEEDBACK_CASES = {
    "box outside the image": (lambda f: _one(f, box=[f["shape"][2] - 10, 5, f["shape"][2] + 20, 40]),
                              "lies outside the {cols}x{rows} image"),
    "negative box": (lambda f: _one(f, box=[-5, 5, 20, 40]), "lies outside the {cols}x{rows} image"),
    "empty box": (lambda f: _one(f, box=[30, 30, 30, 40]), "is empty"),
    "unknown level": (lambda f: _one(f, level="L6-L7"), "unknown disc level 'L6-L7'"),
    "unknown ai level": (lambda f: _one(f, ai_level="C1-C2"), "unknown ai_level 'C1-C2'"),
    "slice out of range": (lambda f: _one(f, slice_index=f["shape"][0]), "is outside the series"),
    "duplicate level": (lambda f: {"action": "corrections",
                                   "corrections": _one(f)["corrections"] * 2}, "appears twice"),
    "box with three numbers": (lambda f: _one(f, box=[1, 2, 3]), "corrections.0.box"),
    "unknown action": (lambda f: {"action": "approve"}, "action"),
    "corrections missing": (lambda f: {"action": "corrections"}, "needs a corrections list"),
    "accept with corrections": (lambda f: {**_one(f), "action": "accept"}, "takes no corrections"),
}


@pytest.mark.parametrize("name", list(FEEDBACK_CASES))
def test_bad_feedback_is_refused_precisely_and_stores_nothing(env, analysed, name):
    client, data = env
    study, findings = analysed
    make, message = FEEDBACK_CASES[name]
    message = message.format(cols=findings["shape"][2], rows=findings["shape"][1])
    r = client.post(f"/api/studies/{study}/feedback", headers=R, json=make(findings))
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]
    assert stored_files(data, "feedback") == []


def test_feedback_for_unknown_study_is_404(env):
    client, _ = env
    r = client.post("/api/studies/1.2.3.4/feedback", headers=R, json={"action": "accept"})
    assert r.status_code == 404 and "study 1.2.3.4 is unknown" in r.json()["detail"]


def test_service_still_analyses_after_all_the_bad_input(env):
    client, _ = env
    r = client.post("/api/studies?wait=120", headers=R, files=png_files(phantom()[1] / "png"))
    assert r.status_code == 201, r.text
    assert r.json()["job"]["state"] == "done"
