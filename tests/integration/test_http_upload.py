"""``POST /_mapper/imports``: a dump archive uploaded, validated whole, stored, imported."""

from __future__ import annotations

import io
import os
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from handlers import create_app
from mapper.dump.manifest import read_manifest
from mapper.transfer.export import ExportSpec, start_export
from tests.support.mappers import Person


@pytest.fixture
def dump(runtime, namespace, seed, tmp_path) -> Path:
    seed(60)
    out = tmp_path / "dump"
    spec = ExportSpec(out=str(out), kinds=["Person"], namespaces=[namespace], batch_size=25)
    assert start_export(runtime, spec).wait(timeout=60).status == "succeeded"
    return out


@pytest.fixture
def client(runtime, tmp_path):
    settings = runtime.settings.replace(auth="off", upload_location=str(tmp_path / "uploads"))
    app = create_app(settings)
    yield app.test_client()
    app.extensions["mapper"].close()


def tar_gz(folder: Path, top: str = "dump") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        tf.add(folder, arcname=top)
    return buffer.getvalue()


def stored_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "uploads").rglob("*") if p.is_file()]


def wait_for(client, job_id):
    deadline = time.monotonic() + 60
    while (status := client.get(f"/_mapper/jobs/{job_id}").json)["status"] not in (
        "succeeded",
        "failed",
    ):
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    return status


def test_uploaded_archive_is_validated_stored_and_imported(
    client, dump, namespace, runtime, tmp_path
):
    target = namespace + "u"
    reply = client.post(
        "/_mapper/imports",
        data={
            "dump": (io.BytesIO(tar_gz(dump)), "dump.tar.gz"),
            "mode": "keep",
            "namespace": target,
            "id": "up1",
        },  # fmt: skip
        content_type="multipart/form-data",
    )
    assert reply.status_code == 200, reply.json
    assert reply.json["id"] == "up1" and reply.json["plan"]["entities"] == 60
    assert wait_for(client, "up1")["counters"]["put"] == 60
    with runtime.context(target):
        assert Person.query().count() == 60
    stored = tmp_path / "uploads" / "up1"
    assert read_manifest(stored).totals["entities"] == 60


def test_zip_uploads_work_too(client, dump, namespace):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in dump.rglob("*"):
            if path.is_file():
                zf.write(path, path.relative_to(dump).as_posix())
    data = {"dump": (io.BytesIO(buffer.getvalue()), "d.zip"), "namespace": namespace + "z"}
    reply = client.post("/_mapper/imports", data=data, content_type="multipart/form-data")
    assert reply.status_code == 200, reply.json


def corrupt(dump: Path) -> None:
    part = dump / read_manifest(dump).parts[0].path
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: (corrupt(d), tar_gz(d))[1], "part-"),
        (lambda d: ((d / "manifest.json").unlink(), tar_gz(d))[1], "no manifest.json"),
        (lambda d: b"not an archive at all", "neither a tar nor a zip"),
    ],
)
def test_rejected_upload_gets_400_and_leaves_no_stored_file(
    client, dump, namespace, runtime, tmp_path, make, message
):
    target = namespace + "x"
    data = {"dump": (io.BytesIO(make(dump)), "dump.tar.gz"), "namespace": target}
    reply = client.post("/_mapper/imports", data=data, content_type="multipart/form-data")
    assert reply.status_code == 400
    assert message in reply.json["error"]
    assert stored_files(tmp_path) == []
    with runtime.context(target):
        assert Person.query().count() == 0


def test_upload_without_a_file_is_refused(client):
    reply = client.post("/_mapper/imports", data={}, content_type="multipart/form-data")
    assert reply.status_code == 400 and "'dump'" in reply.json["error"]


# -- bounds (finding 13): over one, 413 naming it, and nothing kept -------------------


@pytest.fixture
def small_client(runtime, tmp_path):
    """An app that takes uploads of 1 MiB, 8 MiB unpacked, 50 members."""
    settings = runtime.settings.replace(
        auth="off",
        upload_location=str(tmp_path / "uploads"),
        upload_max_bytes=1024 * 1024,
        upload_max_unpacked_bytes=8 * 1024 * 1024,
        upload_max_members=50,
    )
    app = create_app(settings)
    yield app.test_client()
    app.extensions["mapper"].close()


def zip_of(members: dict[str, int | bytes]) -> bytes:
    """A zip whose members are given bytes, or that many spaces (written in chunks)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            with zf.open(name, "w", force_zip64=True) as f:
                if isinstance(content, bytes):
                    f.write(content)
                    continue
                for start in range(0, content, 1 << 20):
                    f.write(b" " * min(1 << 20, content - start))
    return buffer.getvalue()


def post(client, archive: bytes, name: str = "dump.zip"):
    data = {"dump": (io.BytesIO(archive), name), "namespace": "nowhere"}
    return client.post("/_mapper/imports", data=data, content_type="multipart/form-data")


def test_an_upload_over_the_request_bound_gets_413_and_nothing_is_kept(small_client, tmp_path):
    reply = post(small_client, os.urandom(2 * 1024 * 1024), "big.tar")
    assert reply.status_code == 413
    assert "over 1048576 bytes (MAPPER_UPLOAD_MAX_BYTES)" in reply.json["error"]
    assert stored_files(tmp_path) == []


def test_a_small_zip_of_a_huge_manifest_is_refused_before_it_is_unpacked(client, tmp_path):
    archive = zip_of({"dump/manifest.json": 100 * 1024 * 1024})
    assert len(archive) < 1024 * 1024
    started = time.monotonic()
    reply = post(client, archive)
    assert reply.status_code == 413
    error = reply.json["error"]
    assert "'dump/manifest.json' is over 67108864 bytes: a manifest's bound" in error
    assert time.monotonic() - started < 5
    assert stored_files(tmp_path) == []


def test_an_archive_of_too_many_members_gets_413(small_client, tmp_path):
    reply = post(small_client, zip_of({f"dump/f{i}": b"x" for i in range(60)}))
    assert reply.status_code == 413
    assert "more than 50 members (MAPPER_UPLOAD_MAX_MEMBERS)" in reply.json["error"]
    assert stored_files(tmp_path) == []


def test_an_archive_that_unpacks_over_the_bound_gets_413(small_client, tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for i in range(3):  # 3 x 4 MiB of zeros: 12 MiB unpacked, a few KB packed
            info = tarfile.TarInfo(f"dump/part-{i}")
            info.size = 4 * 1024 * 1024
            tf.addfile(info, io.BytesIO(b"\0" * info.size))
    reply = post(small_client, buffer.getvalue(), "dump.tar.gz")
    assert reply.status_code == 413
    assert "'dump/part-2' is over" in reply.json["error"]
    assert "8388608 bytes unpacked (MAPPER_UPLOAD_MAX_UNPACKED_BYTES)" in reply.json["error"]
    assert stored_files(tmp_path) == []


def test_an_archive_holding_a_link_is_refused(small_client, tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        info = tarfile.TarInfo("dump/manifest.json")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    reply = post(small_client, buffer.getvalue(), "dump.tar")
    assert reply.status_code == 400
    assert "not a plain file: 'dump/manifest.json'" in reply.json["error"]
    assert stored_files(tmp_path) == []
