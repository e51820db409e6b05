"""Pass 1 of the import reads each file once and parses its header once (issue 18): the same
answers as reading the file from disk for each step, for every file pydicom ships."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from imaging import storage
from imaging.dicom import parse, render, synth
from imaging.services import staging
from tests.imaging.conftest import sample_files

OPENED: list[str] | None = None


def _count_opens(event: str, args: tuple) -> None:
    if OPENED is not None and event == "open" and isinstance(args[0], str | Path):
        OPENED.append(str(args[0]))


sys.addaudithook(_count_opens)  # audit hooks stay for the process: it records only while OPENED is a list


def test_prepare_opens_the_file_once(tmp_path, dicom_storage):
    global OPENED
    path = synth.write_instance(tmp_path / "one.dcm", rows=64, cols=64)
    with storage.IncomingRun() as run:
        OPENED = []
        try:
            prepared = staging.prepare(path, run)
        finally:
            opened, OPENED = OPENED, None
    assert prepared.parsed is not None and prepared.pixel_status == "ok"
    assert opened.count(str(path)) == 1  # was 4: the parse's sniff and read, the copy, the decode check


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_parsing_and_checking_from_memory_agrees_with_reading_the_file(path):
    try:
        expected = parse.parse_file(path)
    except parse.DicomRejected as exc:
        with pytest.raises(parse.DicomRejected) as caught:
            parse.parse_buffer(path.read_bytes())
        assert caught.value.reason == exc.reason
        return
    parsed, header = parse.parse_buffer(path.read_bytes())
    assert parsed == expected
    if isinstance(parsed, parse.ParsedInstance) and parsed.is_image:
        assert render.header_decode_problem(header, parsed.viewer) == render.decode_problem(path)
