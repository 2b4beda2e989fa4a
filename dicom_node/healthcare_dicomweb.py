"""DICOMweb clients for the Cloud Healthcare receiver: WADO-RS retrieval as Part 10 bytes, and the session.

The Cloud Healthcare API wants OAuth: a URL under ``https://healthcare.googleapis.com/`` gets dicomweb-client's
Google session (google-auth Application Default Credentials, refreshed by itself); any other DICOMweb root (Orthanc
standing in for the store in tests and the local stack) gets a plain ``requests`` session.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass

import requests

from dicom_node.healthcare_notice import HEALTHCARE_API, Notice

_sessions: dict[bool, requests.Session] = {}
_lock = threading.Lock()


def dicomweb_session(url: str) -> requests.Session:
    """One shared session per kind (Google-authorised or plain); ADC is read on first use."""
    google = url.startswith(HEALTHCARE_API)
    with _lock:
        if google not in _sessions:
            if google:
                from dicomweb_client.ext.gcp.session_utils import create_session_from_gcp_credentials

                _sessions[google] = create_session_from_gcp_credentials()
            else:
                _sessions[google] = requests.Session()
        return _sessions[google]


@dataclass(frozen=True)
class FetchError(Exception):
    """A retrieval that failed; ``transient`` ones (5xx, 408, 429, connection, timeout) are worth retrying."""

    detail: str
    transient: bool

    def __str__(self) -> str:
        return self.detail


def transient_status(code: int) -> bool:
    return code in (408, 429) or code >= 500


class Retriever:
    """WADO-RS retrieval of single instances from one DICOMweb root, with no retries of its own (the receiver
    schedules them, so a failing store never blocks other studies)."""

    def __init__(self, url: str, timeout_s: float = 60.0):
        from dicomweb_client.api import DICOMwebClient

        self.url = url.rstrip("/")
        self.client = DICOMwebClient(url=self.url, session=dicomweb_session(self.url), timeout=timeout_s)
        self.client.set_http_retry_params(retry=False)

    def part10(self, notice: Notice) -> bytes:
        """The instance as a Part 10 file in the transfer syntax the store holds it in (``transfer-syntax=*``)."""
        try:
            ds = self.client.retrieve_instance(notice.study, notice.series, notice.instance,
                                               media_types=(("application/dicom", "*"),))
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            raise FetchError(f"WADO-RS HTTP {code} from {self.url}", transient_status(code)) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise FetchError(f"WADO-RS {type(exc).__name__} from {self.url}", True) from None
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue()
