"""A real Orthanc (the Debian ``orthanc`` + ``orthanc-dicomweb`` packages) for the PACS tests.

Each test session starts its own server on a free loopback port with a temporary configuration:
its own storage directory, the DICOMweb plugin loaded, HTTP authentication off (it listens on
127.0.0.1 only), the DICOM (DIMSE) port disabled. The system ``orthanc`` service on 8042, if the
package started one, is neither needed nor touched.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import requests

ORTHANC_BINARY = "Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def available() -> str | None:
    """Why Orthanc cannot run here, or None when it can."""
    if shutil.which(ORTHANC_BINARY) is None:
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
    if not DICOMWEB_PLUGIN.exists():
        return "the Orthanc DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)"
    return None


class Orthanc:
    """One Orthanc process. ``url`` is its REST root; ``dicomweb_url`` what Lightbox syncs from."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dicomweb_url = f"{self.url}/dicom-web"
        self.proc: subprocess.Popen | None = None
        self.http = requests.Session()

    def start(self) -> Orthanc:
        storage = self.workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "lightbox-test-pacs",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "StorageCompression": False,  # so /file returns the bytes as sent
            "HttpPort": self.port,
            "HttpServerEnabled": True,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": False,
            "DicomPort": free_port(),
            "OverwriteInstances": False,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False,
                         "Host": f"127.0.0.1:{self.port}", "Ssl": False},
        }
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(config))
        self._log = open(self.workdir / "orthanc.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([ORTHANC_BINARY, str(config_path)], stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=self.workdir)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited; log:\n{self.log()[-3000:]}")
            try:
                if self.http.get(f"{self.url}/system", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)  # polling for the port to open, not synchronising on a guess
        raise RuntimeError(f"Orthanc did not start; log:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return (self.workdir / "orthanc.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    # --- REST helpers -----------------------------------------------------------------------

    def upload(self, data: bytes) -> str:
        """POST /instances; returns Orthanc's instance id."""
        response = self.http.post(f"{self.url}/instances", data=data, timeout=30)
        response.raise_for_status()
        return response.json()["ID"]

    def find_instance(self, sop_uid: str) -> str | None:
        response = self.http.post(f"{self.url}/tools/lookup", data=sop_uid, timeout=10)
        response.raise_for_status()
        return next((hit["ID"] for hit in response.json() if hit["Type"] == "Instance"), None)

    def file(self, orthanc_id: str) -> bytes:
        response = self.http.get(f"{self.url}/instances/{orthanc_id}/file", timeout=30)
        response.raise_for_status()
        return response.content

    def delete_instance(self, orthanc_id: str) -> None:
        self.http.delete(f"{self.url}/instances/{orthanc_id}", timeout=10).raise_for_status()

    def clear(self) -> None:
        for patient_id in self.http.get(f"{self.url}/patients", timeout=10).json():
            self.http.delete(f"{self.url}/patients/{patient_id}", timeout=10).raise_for_status()
