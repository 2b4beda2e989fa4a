"""The C-STORE SCP against real dcmtk peers: echo, store, AE allow-list, unsupported SOP class, every transfer
syntax stored as received, duplicates, garbage / truncated input, quarantine, low disk."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                         ImplicitVRLittleEndian, JPEGLSLossless, RLELossless, generate_uid)

from conftest import make_mr_series, to_compressed, to_enhanced
from node_support import CopyAnalyzer, node_settings, phantom_series
from peers import NODELAY_ENV, dcmtk, require, storescu, wait_for

from dicom_node.node import Node
from dicom_node.status import load


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> list[Path]:
    return phantom_series(tmp_path_factory.mktemp("phantom"), slices=12)


@pytest.fixture
def node(tmp_path):
    analyzer = CopyAnalyzer()
    n = Node(node_settings(tmp_path / "data"), analyzer).start()
    n.test_analyzer = analyzer
    yield n
    n.stop()


def echo(port: int, calling: str = "ECHOSCU") -> subprocess.CompletedProcess:
    return subprocess.run([dcmtk("echoscu"), "-aet", calling, "-aec", "LDHASSIST", "127.0.0.1", str(port)],
                          capture_output=True, text=True, env=NODELAY_ENV, timeout=60)


def stored_files(node: Node) -> list[Path]:
    return sorted(p for p in node.inbox.root.rglob("*.dcm"))


def dataset_bytes(path: Path) -> bytes:
    """Bytes after the file meta group (what went over the wire)."""
    raw = path.read_bytes()
    meta_len = int.from_bytes(raw[140:144], "little")
    return raw[144 + meta_len:]


def test_echoscu_gets_success(node):
    result = echo(node.port)
    assert result.returncode == 0, result.stderr


def test_storescu_study_is_stored_byte_exact_assembled_and_analysed(node, series):
    result = storescu(node.port, series)
    assert result.returncode == 0, result.stderr
    files = stored_files(node)
    assert len(files) == len(series)
    by_uid = {pydicom.dcmread(p).SOPInstanceUID: p for p in files}
    for src in series:
        ds = pydicom.dcmread(src)
        dst = by_uid[ds.SOPInstanceUID]
        assert dataset_bytes(dst) == dataset_bytes(src)  # stored as received, no transcoding
        assert dst.parent.name == ds.SeriesInstanceUID and dst.parent.parent.name == ds.StudyInstanceUID
        meta = pydicom.dcmread(dst).file_meta
        assert meta.TransferSyntaxUID == ExplicitVRLittleEndian and meta.SourceApplicationEntityTitle == "STORESCU"
    wait_for(lambda: not list(node.inbox.journal_dir.glob("*.wal")), 10, what="journal segment retired")
    wait_for(lambda: node.test_analyzer.calls, 10, what="analysis of the assembled series")
    assert node.test_analyzer.calls == [files[0].parent]
    status = wait_for(lambda: (st := load(node.data_dir)["studies"]) and st[0]["analysed"] == 1 and st, 10,
                      what="job marked done")
    assert status[0]["instances"] == len(series) and status[0]["waiting"] == 0


def test_duplicate_instances_are_acknowledged_once_stored(node, series):
    assert storescu(node.port, series[:5]).returncode == 0
    again = storescu(node.port, series[:5])
    assert again.returncode == 0, again.stderr
    assert len(stored_files(node)) == 5
    rows = node.db.query("SELECT count(*) FROM instances")[0][0]
    assert rows == 5


def test_unknown_calling_ae_title_is_rejected_at_association(tmp_path):
    with Node(node_settings(tmp_path / "data", node_allowed_aets="GOODSCU, OTHER"), None) as n:
        bad = echo(n.port, calling="BADSCU")
        assert bad.returncode != 0
        assert "Calling AE Title Not Recognized" in bad.stdout + bad.stderr
        good = echo(n.port, calling="GOODSCU")
        assert good.returncode == 0, good.stderr


def test_unknown_source_host_is_rejected_at_association(tmp_path):
    with Node(node_settings(tmp_path / "data", node_allowed_hosts="10.255.255.1"), None) as n:
        refused = echo(n.port)
        assert refused.returncode != 0 and "Rejected Permanent" in refused.stdout + refused.stderr
    with Node(node_settings(tmp_path / "data2", node_allowed_hosts="10.255.255.1, 127.0.0.1"), None) as n:
        assert echo(n.port).returncode == 0


def test_unsupported_sop_class_is_refused_and_node_keeps_serving(node, tmp_path):
    ds = make_mr_series(slices=1)[0]
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.5"  # RT Plan
    path = tmp_path / "rtplan.dcm"
    ds.save_as(path, enforce_file_format=True)
    result = storescu(node.port, [path])
    assert result.returncode != 0
    assert "no presentation context" in (result.stdout + result.stderr).lower()
    assert stored_files(node) == []
    assert echo(node.port).returncode == 0


def _write(ds, path: Path, syntax) -> Path:
    ds.file_meta.TransferSyntaxUID = syntax
    implicit = syntax == ImplicitVRLittleEndian
    little = syntax != ExplicitVRBigEndian
    if syntax in (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian):
        ds.save_as(path, implicit_vr=implicit, little_endian=little, enforce_file_format=True)
    else:
        ds.save_as(path, enforce_file_format=True)
    return path


def test_every_transfer_syntax_and_sop_class_is_stored_as_received(node, tmp_path):
    sources = make_mr_series(slices=7)
    files = []
    for ds, syntax in zip(sources, (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
                                    DeflatedExplicitVRLittleEndian)):
        files.append(_write(ds, tmp_path / f"{syntax.name}.dcm".replace(" ", "_"), syntax))
    for name, ds in zip(("rle", "jpegls"), (to_compressed([sources[4]], "rle")[0],
                                             to_compressed([sources[5]], "jpegls")[0])):
        files.append(_write(ds, tmp_path / f"{name}.dcm", ds.file_meta.TransferSyntaxUID))
    enhanced = to_enhanced(make_mr_series())[0]
    files.append(_write(enhanced, tmp_path / "enhanced.dcm", ExplicitVRLittleEndian))
    # propose each file's own syntax (dcmtk's default would convert uncompressed ones)
    for f in files:
        syntax = pydicom.dcmread(f).file_meta.TransferSyntaxUID
        flag = {ImplicitVRLittleEndian: "-xi", ExplicitVRLittleEndian: "-xe", ExplicitVRBigEndian: "-xb",
                DeflatedExplicitVRLittleEndian: "-xd", RLELossless: "-xr", JPEGLSLossless: "-xt"}[syntax]
        result = storescu(node.port, [f], extra=(flag, "-R"))
        assert result.returncode == 0, (f.name, result.stdout, result.stderr)
    stored = {pydicom.dcmread(p).SOPInstanceUID: p for p in stored_files(node)}
    assert len(stored) == len(files)
    for f in files:
        src = pydicom.dcmread(f)
        dst = stored[src.SOPInstanceUID]
        assert pydicom.dcmread(dst).file_meta.TransferSyntaxUID == src.file_meta.TransferSyntaxUID, f.name
        assert dataset_bytes(dst) == dataset_bytes(f), f.name


def test_garbage_bytes_and_a_cut_association_leave_the_node_serving(node, series):
    for payload in (b"\x00" * 3 + b"garbage" * 500, b"\x01\x00\x00\x00\x01\x00" + b"\x00" * 40):
        with socket.create_connection(("127.0.0.1", node.port), timeout=5) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            try:
                s.recv(1024)
            except OSError:
                pass
    assert echo(node.port).returncode == 0
    assert storescu(node.port, series[:2]).returncode == 0
    assert len(stored_files(node)) == 2


def _send_raw(port: int, sop_class: str, sop_instance: str, dataset: bytes) -> int:
    """C-STORE arbitrary dataset bytes (pynetdicom SCU, no encoding) and return the status."""
    from io import BytesIO

    from pynetdicom import AE
    from pynetdicom.dimse_primitives import C_STORE

    ae = AE(ae_title="RAWSCU")
    ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="LDHASSIST")
    assert assoc.is_established
    try:
        req = C_STORE()
        req.MessageID, req.Priority = 1, 2
        req.AffectedSOPClassUID, req.AffectedSOPInstanceUID = sop_class, sop_instance
        req.DataSet = BytesIO(dataset)
        context = assoc.accepted_contexts[0]
        assoc._reactor_checkpoint.clear()  # pause the reactor as send_c_store does, so the reply is ours
        while not assoc._is_paused:
            time.sleep(0.0001)
        try:
            assoc.dimse.send_msg(req, context.context_id)
            _, rsp = assoc.dimse.get_msg(block=True)
        finally:
            assoc._reactor_checkpoint.set()
        return int(rsp.Status)
    finally:
        assoc.release()


def test_truncated_dataset_is_refused_quarantined_and_node_keeps_serving(node, series):
    raw = dataset_bytes(series[0])
    ds = pydicom.dcmread(series[0])
    status = _send_raw(node.port, ds.SOPClassUID, ds.SOPInstanceUID, raw[: len(raw) // 2])
    assert 0xC000 <= status <= 0xCFFF
    notes = list(node.inbox.quarantine_dir.glob("*.json"))
    assert len(notes) == 1
    note = json.loads(notes[0].read_text())
    assert "truncated" in note["reason"] and note["calling_ae"] == "RAWSCU"
    assert stored_files(node) == []
    # a dataset whose UID differs from the request's is refused too
    assert 0xC000 <= _send_raw(node.port, ds.SOPClassUID, generate_uid(), raw) <= 0xCFFF
    assert storescu(node.port, series[:1]).returncode == 0
    assert len(stored_files(node)) == 1


def test_a_data_set_of_another_sop_class_than_the_request_or_on_the_verification_context_is_refused(node, series):
    """The SCP checks what the Part 10 intake checks (dicom_node.journalling): the data set's SOP class is the
    request's, and only storage classes are stored."""
    from pynetdicom.sop_class import CTImageStorage, Verification

    raw = dataset_bytes(series[0])
    ds = pydicom.dcmread(series[0])
    assert ds.SOPClassUID != CTImageStorage
    assert _send_raw(node.port, CTImageStorage, ds.SOPInstanceUID, raw) == 0xC210  # an MR data set sent as CT
    notes = [json.loads(p.read_text()) for p in node.inbox.quarantine_dir.glob("*.json")]
    assert len(notes) == 1 and "SOP Class/Instance UIDs differ" in notes[0]["reason"]
    assert (notes[0]["sop_class"], notes[0]["calling_ae"]) == (CTImageStorage, "RAWSCU")
    assert _send_raw(node.port, Verification, ds.SOPInstanceUID, raw) == 0x0122
    assert stored_files(node) == []


def test_low_disk_refuses_new_associations_and_answers_a700(node, series, tmp_path):
    from pynetdicom import AE

    ae = AE(ae_title="SCU")
    ae.add_requested_context(pydicom.dcmread(series[0]).SOPClassUID, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="LDHASSIST")
    assert assoc.is_established
    node.inbox.min_free = 1 << 62  # more than any disk
    node.inbox._free_checked = 0.0
    try:
        status = assoc.send_c_store(pydicom.dcmread(series[0]))
        assert status.Status == 0xA700
    finally:
        assoc.release()
    refused = storescu(node.port, series[:1])
    assert refused.returncode != 0 and "rejected" in (refused.stdout + refused.stderr).lower()
    node.inbox.min_free = 0
    node.inbox._free_checked = 0.0
    time.sleep(0.01)
    assert storescu(node.port, series[:1]).returncode == 0


def test_dicom_tls_echo_and_store_with_dcmtk(tmp_path, series):
    openssl = require("openssl")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    with Node(node_settings(tmp_path / "data", node_tls_cert=cert, node_tls_key=key), None) as n:
        tls = ("+tla", "+cf", str(cert))
        result = subprocess.run([dcmtk("echoscu"), *tls, "-aet", "TLSSCU", "-aec", "LDHASSIST", "127.0.0.1",
                                 str(n.port)], capture_output=True, text=True, env=NODELAY_ENV, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        stored = storescu(n.port, series[:2], extra=tls)
        assert stored.returncode == 0, stored.stdout + stored.stderr
        assert len(stored_files(n)) == 2
        plain = echo(n.port)  # a plain-TCP caller cannot talk to the TLS port
        assert plain.returncode != 0


def test_ldh_serve_and_ldh_status(tmp_path, series):
    import os
    import signal
    import sys

    data = tmp_path / "data"
    env = {**os.environ, "LDH_NODE_HOST": "127.0.0.1", "LDH_NODE_MIN_FREE_MB": "0", "LDH_NODE_QUIET_SECONDS": "0.3",
           "LDH_NODE_RECEIVERS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ai_service.cli", "serve", "--receive-only", "--no-api",
                             "--port", "0", "--data-dir", str(data)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert "listening on" in line, line + proc.stderr.read()
        port = int(line.split("listening on ")[1].split(",")[0].rsplit(":", 1)[1])
        assert storescu(port, series).returncode == 0

        def status():
            out = subprocess.run([sys.executable, "-m", "ai_service.cli", "status", "--data-dir", str(data),
                                  "--json"], capture_output=True, text=True, env=env, check=True).stdout
            studies = json.loads(out)["studies"]
            return studies if studies and studies[0]["skipped"] == 1 else None

        studies = wait_for(status, 15, interval=0.3, what="series assembled")
        assert studies[0]["instances"] == len(series) and "no analyzer running" in studies[0]["notes"][0]
        text = subprocess.run([sys.executable, "-m", "ai_service.cli", "status", "--data-dir", str(data)],
                              capture_output=True, text=True, env=env, check=True).stdout
        assert text.splitlines()[0].split() == ["study", "instances", "series", "waiting", "skipped", "queued",
                                                "analysed", "exported", "failed"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
