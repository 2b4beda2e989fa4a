"""The node's own upper layer (dicom_node.upper_layer) and command sets (dicom_node.dimse): data sets split over
many PDUs, the association limit, a DIMSE service it does not serve, responses that pydicom reads back."""

from __future__ import annotations

import time
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.sop_class import MRImageStorage

from node_support import node_settings, phantom_series
from peers import storescu

from dicom_node.dimse import C_STORE_RQ, BadCommand, Command, decode_command, encode_response
from dicom_node.node import Node
from dicom_node.upper_layer import IS_COMMAND, IS_LAST, p_data, pdv_items


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> list[Path]:
    return phantom_series(tmp_path_factory.mktemp("phantom"), slices=4)


def test_a_response_is_a_command_set_pydicom_reads_with_its_group_length():
    request = Command(C_STORE_RQ, 7, MRImageStorage, "1.2.3.4", True)
    raw = encode_response(request, 0xC210, "cannot understand: truncated")
    ds = read_dataset(BytesIO(raw), is_implicit_VR=True, is_little_endian=True)
    assert ds.CommandGroupLength == len(raw) - 12
    assert (ds.CommandField, ds.MessageIDBeingRespondedTo, ds.Status) == (0x8001, 7, 0xC210)
    assert (ds.AffectedSOPClassUID, ds.AffectedSOPInstanceUID) == (MRImageStorage, "1.2.3.4")
    assert ds.ErrorComment == "cannot understand: truncated" and ds.CommandDataSetType == 0x0101


def _implicit(ds: Dataset) -> bytes:
    out = DicomBytesIO()
    out.is_implicit_VR, out.is_little_endian = True, True
    write_dataset(out, ds)
    return out.getvalue()


def test_a_c_store_request_encoded_by_pydicom_is_decoded():
    ds = Dataset()
    ds.AffectedSOPClassUID, ds.CommandField, ds.MessageID, ds.Priority = MRImageStorage, C_STORE_RQ, 42, 0
    ds.CommandDataSetType, ds.AffectedSOPInstanceUID, ds.MoveOriginatorApplicationEntityTitle = 1, "1.2.3.4", "MOVER"
    length = Dataset()
    length.CommandGroupLength = len(_implicit(ds))
    raw = _implicit(length) + _implicit(ds)
    assert decode_command(raw) == Command(C_STORE_RQ, 42, MRImageStorage, "1.2.3.4", True)
    with pytest.raises(BadCommand):
        decode_command(raw[:-3])


def test_a_response_longer_than_the_peers_maximum_pdu_is_fragmented():
    command = bytes(range(256)) * 3
    pdus = p_data(5, command, peer_max_pdu=100)
    fragments, pos = [], 0
    while pos < len(pdus):
        kind, length = pdus[pos], int.from_bytes(pdus[pos + 2 : pos + 6], "big")
        assert kind == 0x04 and length <= 100
        fragments += list(pdv_items(bytearray(pdus[pos + 6 : pos + 6 + length])))
        pos += 6 + length
    assert b"".join(bytes(f) for _, _, f in fragments) == command
    assert {cx for cx, _, _ in fragments} == {5}
    assert [control for _, control, _ in fragments] == [IS_COMMAND] * (len(fragments) - 1) + [IS_COMMAND | IS_LAST]


def test_data_sets_split_over_many_small_pdus_are_stored_byte_exact(tmp_path, series):
    with Node(node_settings(tmp_path / "data", node_max_pdu=4096), None) as node:
        result = storescu(node.port, series)
        assert result.returncode == 0, result.stdout + result.stderr
        stored = {p.stem: p for p in node.inbox.root.rglob("*.dcm")}
        for src in series:
            ds = pydicom.dcmread(src)
            assert pydicom.dcmread(stored[ds.SOPInstanceUID]).PixelData == ds.PixelData


def test_associations_over_the_limit_are_rejected_and_the_node_keeps_serving(tmp_path, series):
    with Node(node_settings(tmp_path / "data", node_max_associations=1), None) as node:
        ae = AE(ae_title="HOLDER")
        ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
        held = ae.associate("127.0.0.1", node.port, ae_title="LDHASSIST")
        assert held.is_established
        try:
            refused = storescu(node.port, series[:1])
            assert refused.returncode != 0 and "rejected" in (refused.stdout + refused.stderr).lower()
        finally:
            held.release()
        assert storescu(node.port, series[:1]).returncode == 0


def test_a_dimse_service_the_node_does_not_serve_aborts_only_that_association(tmp_path, series):
    with Node(node_settings(tmp_path / "data"), None) as node:
        ae = AE(ae_title="FINDSCU")
        ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", node.port, ae_title="LDHASSIST")
        assert assoc.is_established
        request = C_FIND()
        request.MessageID, request.Priority, request.AffectedSOPClassUID = 1, 2, MRImageStorage
        query = Dataset()
        query.QueryRetrieveLevel, query.PatientName = "STUDY", "*"
        request.Identifier = BytesIO(_implicit(query))
        assoc.dimse.send_msg(request, assoc.accepted_contexts[0].context_id)
        deadline = time.monotonic() + 30
        while not assoc.is_aborted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert assoc.is_aborted
        assert storescu(node.port, series[:1]).returncode == 0
