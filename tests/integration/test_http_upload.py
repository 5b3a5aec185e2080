"""``POST /_mapper/imports``: a dump archive uploaded, validated whole, stored, imported."""

from __future__ import annotations

import io
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from handlers import create_app
from mapper.dump.manifest import read_manifest
from mapper.transfer.export import ExportSpec, start_export
from tests.mappers import Person


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
