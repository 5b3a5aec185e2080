"""start_emulator's configuration errors, checked without any emulator running."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from mapper.errors import ConfigurationError
from mapper.testing.emulator import start_emulator


def _fake_gcloud(sdk: Path, script: str) -> Path:
    """An SDK layout with a `gcloud` that runs `script`; returns its bin dir."""
    bin_dir = sdk / "bin"
    bin_dir.mkdir(parents=True)
    gcloud = bin_dir / "gcloud"
    gcloud.write_text("#!/bin/sh\n" + script)
    gcloud.chmod(gcloud.stat().st_mode | stat.S_IEXEC)
    (sdk / "platform").mkdir()
    return bin_dir


@pytest.mark.parametrize("kind", ["datastore", "firestore"])
def test_missing_gcloud_names_the_install_command(kind, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigurationError, match="gcloud is not on PATH") as raised:
        start_emulator(kind)
    assert f"apt-get install google-cloud-cli-{kind}-emulator" in str(raised.value)


@pytest.mark.parametrize("kind", ["datastore", "firestore"])
def test_missing_component_names_the_install_command(kind, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(_fake_gcloud(tmp_path / "sdk", "exit 1\n")))
    with pytest.raises(ConfigurationError, match="component is not installed") as raised:
        start_emulator(kind)
    assert f"apt-get install google-cloud-cli-{kind}-emulator" in str(raised.value)


def test_failed_start_reports_the_tail_of_the_log(tmp_path, monkeypatch):
    sdk = tmp_path / "sdk"
    bin_dir = _fake_gcloud(sdk, "echo 'ERROR: java not found' >&2\nexit 3\n")
    (sdk / "platform" / "cloud-datastore-emulator").mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(ConfigurationError, match="exited with status 3") as raised:
        start_emulator("datastore", timeout=10)
    message = str(raised.value)
    assert "ERROR: java not found" in message
    assert "apt-get install google-cloud-cli-datastore-emulator" in message


def test_unknown_kind_is_refused_with_its_repr():
    with pytest.raises(ConfigurationError, match="'bigtable'"):
        start_emulator("bigtable")


def test_taken_port_is_refused_before_starting_anything():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"port {port} is already in use"):
            start_emulator("datastore", port=port)
