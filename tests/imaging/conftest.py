from __future__ import annotations

from pathlib import Path

import pytest

from imaging.dicom.synth import samples_dir

SAMPLES = samples_dir()


def sample_files() -> list[Path]:
    """Every file pydicom ships on disk (never the ones it would download)."""
    return sorted(p for p in SAMPLES.rglob("*") if p.is_file())


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


@pytest.fixture(autouse=True)
def dicom_storage(settings, tmp_path) -> Path:
    """DICOM and render storage in this test's own directory (never the shared var/test)."""
    root = tmp_path / "storage"
    options = {"location": str(root), "file_permissions_mode": 0o640, "directory_permissions_mode": 0o750}
    settings.STORAGES = {
        **settings.STORAGES,
        "dicom": {"BACKEND": "imaging.storage.AtomicFileSystemStorage", "OPTIONS": options},
        "renders": {"BACKEND": "imaging.storage.AtomicFileSystemStorage", "OPTIONS": options},
    }
    return root


@pytest.fixture
def inputs(tmp_path) -> Path:
    path = tmp_path / "inputs"
    path.mkdir()
    return path


def is_dicomdir(path: Path) -> bool:
    return path.name.upper().startswith("DICOMDIR")

