"""What a Cloud Healthcare DICOM store's Pub/Sub notification names, and where that store's DICOMweb root is.

The store publishes one message per new instance whose *data* is the instance's resource name
``projects/P/locations/L/datasets/D/dicomStores/S/dicomWeb/studies/U/series/V/instances/W``; the attributes
(``action``, ``storeName``) are not always there, so only the data is read. The key of an instance is the whole
study/series/instance triplet, as the store's own paths are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dicomweb_client.ext.gcp.uri import GoogleCloudHealthcareURL

HEALTHCARE_API = "https://healthcare.googleapis.com/"
_UID = r"[0-9]+(?:\.[0-9]+)*"
_NOTICE = re.compile(
    rf"(?P<store>projects/(?P<project>[^/\s]+)/locations/(?P<location>[^/\s]+)/datasets/(?P<dataset>[^/\s]+)"
    rf"/dicomStores/(?P<store_id>[^/\s]+))/dicomWeb/studies/(?P<study>{_UID})/series/(?P<series>{_UID})"
    rf"/instances/(?P<instance>{_UID})")


class BadNotice(ValueError):
    """The message data is not a DICOM store instance name: it can never be fetched."""


@dataclass(frozen=True)
class Notice:
    store: str  # projects/P/locations/L/datasets/D/dicomStores/S
    study: str
    series: str
    instance: str

    @property
    def key(self) -> tuple[str, str, str]:
        return self.study, self.series, self.instance


def parse_notice(data: bytes) -> Notice:
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise BadNotice("notification data is not ASCII") from None
    match = _NOTICE.fullmatch(text)
    if match is None or any(len(match[k]) > 64 for k in ("study", "series", "instance")):
        raise BadNotice(f"notification data is not a DICOM store instance name: {text[:200]!r}")
    return Notice(match["store"], match["study"], match["series"], match["instance"])


def store_dicomweb_url(store: str) -> str:
    """The DICOMweb root of a store named ``projects/P/locations/L/datasets/D/dicomStores/S``."""
    parts = store.split("/")
    return str(GoogleCloudHealthcareURL(parts[1], parts[3], parts[5], parts[7]))
