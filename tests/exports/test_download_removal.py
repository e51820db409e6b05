"""An archive is deleted as its last allowed download completes, and only then: a download that
breaks off is given back and leaves the file (exports.services, "Downloads"). Through the test
client (Django closes the stream as a server does) and through a real HTTP server whose client
goes away mid-download. The hourly purge removes any file no job needs."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import Client

from audit.models import AccessEvent
from exports import services
from exports.models import ExportRequest
from tests.conftest import gunicorn_server, login_verified, reauthenticate, wait_for
from tests.exports.conftest import make_study
from tests.factories import actor_of


def _ready(user, folder, *, max_downloads: int, **study) -> ExportRequest:
    study = make_study(user, folder, **study)
    export = services._create(patient=user.patient, studies=[study], deidentify=False, requested_by_id=user.pk,
                              passphrase="alpha-bravo-charlie-delta-echo-foxtrot")
    ExportRequest.objects.filter(pk=export.pk).update(max_downloads=max_downloads)
    assert services.export_package(export_id=export.pk) == "ready"
    export.refresh_from_db()
    return export


def _download_events(export) -> int:
    return AccessEvent.objects.filter(patient=export.patient, action="download").count()


@pytest.mark.django_db(transaction=True)
def test_the_archive_is_deleted_as_the_last_allowed_download_completes_and_the_page_says_so(
        patient_client: Client, patient, tmp_path, exports_dir):
    export = _ready(patient, tmp_path / "s", max_downloads=2, slices=1)
    path = services.archive_path(export)
    expected = path.read_bytes()
    reauthenticate(patient_client)
    url = f"/exports/{export.pk}/download/"

    first = patient_client.post(url)
    assert first.status_code == 200 and b"".join(first.streaming_content) == expected
    assert int(first["Content-Length"]) == len(expected)
    assert path.exists(), "one download of two: the file stays"
    export.refresh_from_db()
    assert (export.status, export.downloads, export.downloads_completed) == ("ready", 1, 1)
    page = patient_client.get(f"/exports/{export.pk}/").content.decode()
    assert "After the last one finishes, the file is deleted from our server." in page

    last = patient_client.post(url)
    assert last.status_code == 200 and b"".join(last.streaming_content) == expected
    assert not path.exists(), "the last allowed download completed: the file must be gone"
    export.refresh_from_db()
    assert (export.status, export.downloads, export.downloads_completed) == ("downloaded", 2, 2)
    assert export.archive_removed_at is not None

    page = patient_client.get(f"/exports/{export.pk}/").content.decode()
    assert "Downloaded and removed" in page
    assert "This file was downloaded 2 times, the most allowed, and was then deleted from our server" in page
    assert "Download the encrypted file" not in page
    assert "Downloaded and removed" in patient_client.get("/exports/").content.decode()

    refused = patient_client.post(url)
    assert refused.status_code == 410 and "has been deleted" in refused.content.decode()
    assert _download_events(export) == 2


@pytest.mark.django_db(transaction=True)
def test_a_download_that_breaks_off_is_given_back_and_leaves_the_file(patient_client: Client, patient, tmp_path,
                                                                       exports_dir):
    # Bigger than one block of the stream, so that a download can stop between two blocks.
    export = _ready(patient, tmp_path / "s", max_downloads=1, slices=2, size=512)
    path = services.archive_path(export)
    assert path.stat().st_size > 2 * services.DOWNLOAD_BLOCK
    reauthenticate(patient_client)
    url = f"/exports/{export.pk}/download/"

    # The client goes away after the first block: the server stops iterating and closes the
    # response (PEP 3333), as here.
    broken = patient_client.post(url)
    assert broken.status_code == 200
    assert len(next(iter(broken.streaming_content))) == services.DOWNLOAD_BLOCK
    broken.close()
    export.refresh_from_db()
    assert path.exists(), "a broken download must not burn the file"
    assert (export.status, export.downloads, export.downloads_completed) == ("ready", 0, 0)
    assert _download_events(export) == 1  # the attempt stays in the patient's log

    # Broken before the first byte (the browser gave up at once): given back too.
    patient_client.post(url).close()
    export.refresh_from_db()
    assert path.exists() and export.downloads == 0

    # The one allowed download is still there, and completing it removes the file.
    expected = path.read_bytes()
    whole = patient_client.post(url)
    assert whole.status_code == 200 and b"".join(whole.streaming_content) == expected
    assert not path.exists()
    export.refresh_from_db()
    assert (export.status, export.downloads, export.downloads_completed) == ("downloaded", 1, 1)
    assert _download_events(export) == 3


@pytest.mark.django_db(transaction=True)
def test_a_download_running_while_the_limit_is_reached_elsewhere_is_refused(patient, tmp_path, exports_dir):
    """Downloads are counted when they start: with one allowed, a second one while the first is
    still streaming is refused, and the first one completing removes the file."""
    export = _ready(patient, tmp_path / "s", max_downloads=1, slices=1)
    actor = actor_of(patient)
    expected = services.archive_path(export).read_bytes()
    running = services.export_download(actor=actor, export_id=export.pk)
    with pytest.raises(services.ExportUnavailable, match="maximum number"):
        services.export_download(actor=actor, export_id=export.pk)
    assert services.archive_path(export).exists()
    assert b"".join(running.chunks) == expected
    assert not services.archive_path(export).exists()


def _raw_post(base: str, path: str, cookies: dict[str, str], csrf: str) -> socket.socket:
    parts = urlsplit(base)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    sock.sendall((f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nCookie: {cookie}\r\nX-CSRFToken: {csrf}\r\n"
                  f"Content-Length: 0\r\nConnection: close\r\n\r\n").encode())
    return sock


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize("server", ["django", "gunicorn"])
def test_a_real_server_whose_client_goes_away_gives_the_download_back(transactional_db, request, client, patient,
                                                                       tmp_path, exports_dir, server):
    """Django's own HTTP server (wsgiref) and gunicorn, the one we deploy: the client reads the
    headers and a little of the body, then closes the connection with the rest unread (a reset).
    The archive is far larger than the socket buffers, so the server is still writing."""
    with contextlib.ExitStack() as stack:
        base = (request.getfixturevalue("live_server").url if server == "django"
                else stack.enter_context(gunicorn_server(tmp_path / "gunicorn.log", EXPORTS_DIR=str(exports_dir)))[0])
        _download_broken_then_whole(base, client, patient, tmp_path)


def _download_broken_then_whole(base: str, client, patient, tmp_path) -> None:
    export = _ready(patient, tmp_path / "s", max_downloads=1, slices=24, size=512)
    path = services.archive_path(export)
    size = path.stat().st_size
    assert size > 8 * 1024 * 1024, size
    login_verified(client, patient)
    reauthenticate(client)
    client.get(f"/exports/{export.pk}/")  # sets the CSRF cookie, as the page does for a browser
    cookies = {name: morsel.value for name, morsel in client.cookies.items()}
    csrf = cookies[settings.CSRF_COOKIE_NAME]
    url = f"/exports/{export.pk}/download/"

    sock = _raw_post(base, url, cookies, csrf)
    head, body = _read_head(sock)
    assert head.startswith(b"HTTP/1.1 200"), head
    sock.close()  # unread data: the kernel answers the server with a reset
    wait_for(lambda: ExportRequest.objects.get(pk=export.pk).downloads == 0, what="the broken download given back")
    assert path.exists()
    export.refresh_from_db()
    assert (export.status, export.downloads_completed) == ("ready", 0)

    sock = _raw_post(base, url, cookies, csrf)
    head, body = _read_head(sock)
    assert head.startswith(b"HTTP/1.1 200"), head
    while chunk := sock.recv(1 << 20):
        body += chunk
    sock.close()
    assert len(body) == size
    done = wait_for(lambda: (e := ExportRequest.objects.get(pk=export.pk)).status == "downloaded" and e,
                    what="the completed download to remove the archive")
    assert done.downloads == done.downloads_completed == 1
    assert not path.exists()


@pytest.mark.django_db
def test_the_purge_removes_files_no_job_needs(patient, tmp_path, exports_dir):
    keep = _ready(patient, tmp_path / "a", max_downloads=5, slices=1)
    gone = _ready(patient, tmp_path / "b", max_downloads=5, slices=1)
    # A crash between the commit and the unlink: the job says "downloaded", the file is there.
    ExportRequest.objects.filter(pk=gone.pk).update(status=ExportRequest.Status.DOWNLOADED)
    gone_path = services.archive_path(gone)
    orphan = exports_dir / "lightbox-export-999999-0123456789abcdef.zip"
    orphan.write_bytes(b"left by a job whose row is gone")
    dead_tmp = exports_dir / f".tmp-{gone_path.name}-x1y2z3.part"
    dead_tmp.write_bytes(b"a dead worker's temporary file")
    someone_elses = exports_dir / "notes.txt"
    someone_elses.write_text("not ours: never touched")
    fresh = exports_dir / "lightbox-export-999998-fedcba9876543210.zip"
    fresh.write_bytes(b"published a moment ago")
    old = time.time() - settings.EXPORTS_STALE_AFTER - 60
    for path in (services.archive_path(keep), gone_path, orphan, dead_tmp, someone_elses):
        os.utime(path, (old, old))

    assert services.exports_purge_expired() == 0  # nothing expired; the sweep runs all the same
    assert services.archive_path(keep).exists()
    assert not gone_path.exists() and not orphan.exists() and not dead_tmp.exists()
    assert someone_elses.exists() and fresh.exists()
