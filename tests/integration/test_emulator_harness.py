"""The emulator harness: both kinds start, reset empties them, stop leaves nothing behind."""

from __future__ import annotations

import urllib.request

import psutil
import pytest
from google.cloud import datastore

from mapper.testing.emulator import start_emulator


def _processes_on_port(port: int) -> list[psutil.Process]:
    """Processes whose command line names ``port`` (a zombie's command line is empty)."""
    flags = (f"--port={port}", f"--host-port=127.0.0.1:{port}")
    return [
        proc
        for proc in psutil.process_iter(["cmdline"])
        if any(arg in flags for arg in proc.info["cmdline"] or ())
    ]


@pytest.mark.parametrize("kind", ["datastore", "firestore"])
def test_emulator_starts_answers_and_stops_without_leftover_processes(kind):
    emulator = start_emulator(kind)
    port = int(emulator.host.rsplit(":", 1)[1])
    try:
        with urllib.request.urlopen(emulator.url + "/", timeout=5) as response:
            assert response.read().strip() == b"Ok"
        java = [p for p in _processes_on_port(port) if "java" in p.info["cmdline"][0]]
        assert java, "expected the emulator's JVM to be running"
    finally:
        emulator.stop()
    assert not emulator.running
    assert _processes_on_port(port) == []
    assert not emulator.workdir.exists()


def test_reset_empties_the_emulator(emulator_env, namespace):
    client = datastore.Client(project=emulator_env.project, namespace=namespace)
    key = client.key("Thing", "one")
    entity = datastore.Entity(key)
    entity["n"] = 1
    client.put(entity)
    assert client.get(key) is not None

    emulator_env.reset()

    assert client.get(key) is None
    client.close()


def test_capabilities_follow_the_design_table(emulator):
    if emulator.kind == "datastore":
        assert (emulator.supports_metadata, emulator.supports_scatter) == (True, True)
        assert emulator.max_txn_entity_groups == 25
    else:
        assert (emulator.supports_metadata, emulator.supports_scatter) == (False, False)
        assert emulator.max_txn_entity_groups == 500


def test_context_manager_stops_the_emulator():
    with start_emulator("datastore") as emulator:
        assert emulator.running
    assert not emulator.running
