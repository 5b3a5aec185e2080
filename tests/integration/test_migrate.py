"""Migrations on the emulator: the shop's three migrations applied in order and once, a poisoned
one resumed after its fix, two applies at once, an edited one reported, dry runs that write
nothing and count what apply does, and rollback from backups byte for byte."""

from __future__ import annotations

import importlib
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from examples.shop.seed import seed as seed_shop
from handlers import create_app
from mapper.datastore.keys import key_bytes
from mapper.datastore.query import shard_query, stream
from mapper.datastore.rpc import Key
from mapper.engine.runtime import Runtime
from mapper.errors import ConfigurationError, JobStateError
from mapper.migrate import runner
from mapper.migrate.ledger import LedgerBusy, LedgerLock, read_entries

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop" / "migrations"
KINDS = ("Member", "Product", "Country")
NAMES = ["0001_fill_email_domain", "0002_rename_product_price", "0003_load_countries"]

#: Replaces the shop's 0001: counts each member's visits, and fails on the poisoned one
#: unless POISON_SKIPPED is True (the fix).
VISITING = """
from examples.shop.models import Member
from mapper import Mapper
from mapper.migrate import Run

POISON_SKIPPED = {skipped}


class Visit(Mapper):
    KIND = "Member"

    def map(self, member):
        if member["name"] == "poison" and not POISON_SKIPPED:
            raise ValueError("poisoned member")
        member["visits"] = member.get("visits", 0) + 1
        return [member], []


migration = Run(Visit, batch_size=5)
"""


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A copy of the shop's migrations as a package of its own: tests may edit it."""
    name = "mig_" + uuid.uuid4().hex[:10]
    shutil.copytree(SHOP, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    yield name, tmp_path / name
    forget(name)


def forget(package: str) -> None:
    """Drop the package's modules, as a new process (the next deploy) would not have them."""
    for module in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[module]
    importlib.invalidate_caches()


def edit(path: Path, text: str, package: str) -> None:
    path.write_text(text)
    forget(package)


@pytest.fixture
def shop(datastore_client):
    seed_shop(datastore_client)
    return datastore_client


def snapshot(rt: Runtime, namespace: str) -> dict[bytes, bytes]:
    """Every shop entity as stored: serialized key -> serialized entity protobuf."""
    found = {}
    for kind in KINDS:
        entities = stream(rt.store, shard_query(kind, [], None, None, None, None), namespace)
        while batch := entities.take(500):
            for pb in batch:
                found[key_bytes(pb.key)] = pb.SerializeToString(deterministic=True)
    return found


def apply(rt, package, namespace, **options):
    return runner.apply(rt, package, "tester", namespace=namespace, **options)


def test_three_migrations_apply_in_order_once_and_again_do_nothing(
    runtime, namespace, package, shop
):
    name, _ = package
    pending = runner.ledger_status(runtime, name)
    assert [m.state for m in pending.migrations] == ["pending"] * 3

    info = apply(runtime, name, namespace)
    assert info.applied_now == tuple(NAMES) and info.failed is None and not info.pending
    members = list(shop.query(kind="Member").fetch())
    assert {m["email_domain"] for m in members} == {"a.example", "b.example"}
    products = list(shop.query(kind="Product").fetch())
    assert all("price" not in p and p["price_cents"] > 0 for p in products)
    countries = {c["code"]: c.key.id for c in shop.query(kind="Country").fetch()}
    assert sorted(countries) == ["DE", "ES", "FR", "IT", "PT"]
    assert countries["FR"] == 5001  # merged by natural key: the existing entity kept its key

    entries = read_entries(runtime, NAMES)
    started = [entries[n].started for n in NAMES]
    assert started == sorted(started) and all(entries[n].finished for n in NAMES)
    assert [entries[n].job_ids for n in NAMES] == [[f"migrate-{n}-r1-s0"] for n in NAMES]
    assert entries[NAMES[0]].counters["put"] == 30 and entries[NAMES[0]].by == "tester"

    before = snapshot(runtime, namespace)
    again = apply(runtime, name, namespace)
    assert again.applied_now == () and not again.pending
    assert snapshot(runtime, namespace) == before
    assert read_entries(runtime, NAMES)[NAMES[2]].job_ids == entries[NAMES[2]].job_ids


def test_poisoned_migration_stops_the_sequence_and_apply_resumes_the_same_job(
    runtime, namespace, package, shop
):
    name, path = package
    poisoned = shop.get(shop.key("Member", 18))
    poisoned["name"] = "poison"
    shop.put(poisoned)
    edit(path / "0001_fill_email_domain.py", VISITING.format(skipped=False), name)

    failed = apply(runtime, name, namespace)
    assert failed.failed == NAMES[0] and failed.applied_now == ()
    states = {m.name: m.state for m in failed.migrations}
    assert states == {NAMES[0]: "failed", NAMES[1]: "pending", NAMES[2]: "pending"}
    assert "poisoned member" in failed.migrations[0].error
    assert all("price" in p for p in shop.query(kind="Product").fetch())  # 0002 did not run
    visited = [m for m in shop.query(kind="Member").fetch() if m.get("visits")]
    assert 0 < len(visited) < 30  # the batches before the poisoned one are written

    edit(path / "0001_fill_email_domain.py", VISITING.format(skipped=True), name)
    resumed = apply(runtime, name, namespace)
    assert resumed.applied_now == tuple(NAMES) and not resumed.pending
    assert {m.get("visits") for m in shop.query(kind="Member").fetch()} == {1}
    entry = read_entries(runtime, [NAMES[0]])[NAMES[0]]
    assert entry.job_ids == [f"migrate-{NAMES[0]}-r1-s0"]  # the same job, resumed
    assert entry.counters["processed"] == 30  # no batch mapped twice


def test_two_applies_at_once_run_each_migration_once(settings, namespace, package, shop):
    name, path = package
    edit(path / "0001_fill_email_domain.py", VISITING.format(skipped=True), name)
    results, errors = [], []

    def deploy():
        rt = Runtime(settings)
        try:
            results.append(apply(rt, name, namespace, wait_seconds=120))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            rt.close()

    threads = [threading.Thread(target=deploy) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not errors
    assert sorted(len(r.applied_now) for r in results) == [0, 3]
    assert {m.get("visits") for m in shop.query(kind="Member").fetch()} == {1}
    rt = Runtime(settings)
    try:
        entries = read_entries(rt, NAMES)
    finally:
        rt.close()
    assert all(len(entries[n].job_ids) == 1 for n in NAMES)
    assert len(list(shop.query(kind="Country").fetch())) == 5


def test_apply_while_another_holds_the_ledger_exits_with_who_holds_it(
    runtime, namespace, package, cli
):
    name, path = package
    LedgerLock(runtime, "deploy-7@ci").try_take()
    with pytest.raises(LedgerBusy, match="deploy-7@ci"):
        apply(runtime, name, namespace)
    result = cli("--path", str(path.parent), "migrate", "--package", name, "--apply")
    assert result.exit_code == 2
    assert "migrations are being applied by deploy-7@ci" in result.output


def test_edited_applied_migration_is_reported_and_not_run_again(
    runtime, namespace, package, shop, cli
):
    name, path = package
    apply(runtime, name, namespace)
    source = path / "0002_rename_product_price.py"
    edit(source, source.read_text() + "\n# edited after it was applied\n", name)

    info = runner.ledger_status(runtime, name)
    assert [m.state for m in info.migrations] == ["applied", "changed", "applied"]
    assert info.migrations[1].applied_checksum != info.migrations[1].checksum
    messages = []
    again = apply(runtime, name, namespace, progress=messages.append)
    assert again.applied_now == () and not again.pending
    assert f"{NAMES[1]}: changed since it was applied; not run again" in messages
    assert read_entries(runtime, [NAMES[1]])[NAMES[1]].job_ids == [f"migrate-{NAMES[1]}-r1-s0"]
    listed = cli("--path", str(path.parent), "migrate", "--package", name)
    assert listed.exit_code == 0
    assert "0002_rename_product_price        changed" in listed.stdout
    assert "its source changed since it was applied; it is not run again" in listed.stdout


def test_dry_run_writes_nothing_and_counts_what_apply_then_does(runtime, namespace, package, shop):
    name, _ = package
    done = shop.get(shop.key("Member", 1))
    done["email_domain"] = "a.example"  # filled already: the migration leaves it alone
    shop.put(done)
    before = snapshot(runtime, namespace)
    reports = runner.dry_run(runtime, name, namespace=namespace)
    assert snapshot(runtime, namespace) == before
    assert runner.ledger_status(runtime, name).pending  # and no ledger entry either
    audit = {r["name"]: r["steps"][0] for r in reports}
    assert audit[NAMES[0]]["kinds"] == {
        "Member": {"put": 29, "changed": 29, "deleted": 0, "unchanged": 1}
    }
    diff = audit[NAMES[0]]["diffs"][0]
    assert diff["change"] == "changed"
    assert diff["properties"] == {"email_domain": [None, "b.example"]}  # Member 2
    assert audit[NAMES[1]]["kinds"]["Product"]["changed"] == 20
    assert audit[NAMES[1]]["diffs"][0]["properties"] == {
        "price": [100, None],
        "price_cents": [None, 100],
    }
    assert audit[NAMES[2]]["kinds"] == {
        "Country": {"put": 4, "changed": 4, "deleted": 0, "unchanged": 1}
    }

    apply(runtime, name, namespace)
    after = snapshot(runtime, namespace)
    entries = read_entries(runtime, NAMES)
    for migration, kind in zip(NAMES, KINDS, strict=True):
        counts = audit[migration]["kinds"][kind]
        assert counts["put"] == entries[migration].counters["put"], migration
        differing = [k for k, v in after.items() if _kind(k) == kind and before.get(k) != v]
        assert counts["changed"] == len(differing), migration


def _kind(key: bytes) -> str:
    return Key.FromString(key).path[-1].kind


def test_sampled_dry_run_maps_only_n_entities(runtime, namespace, package, shop):
    name, _ = package
    reports = runner.dry_run(runtime, name, namespace=namespace, sample=7)
    member = reports[0]["steps"][0]["kinds"]["Member"]
    assert member["put"] == 7 and member["changed"] == 7


def test_rollback_after_backup_gives_back_the_earlier_entities_byte_for_byte(
    runtime, namespace, package, shop, tmp_path
):
    name, _ = package
    before = snapshot(runtime, namespace)
    apply(runtime, name, namespace, backup_root=str(tmp_path / "backups"))
    assert snapshot(runtime, namespace) != before

    with pytest.raises(JobStateError, match="roll back 0002_rename_product_price, "):
        runner.rollback(runtime, name, NAMES[0], "tester")
    for migration in reversed(NAMES):
        runner.rollback(runtime, name, migration, "tester")
    assert snapshot(runtime, namespace) == before
    info = runner.ledger_status(runtime, name)
    assert [m.state for m in info.migrations] == ["pending"] * 3
    assert all(m.rolled_back for m in info.migrations)

    again = apply(runtime, name, namespace)  # a rolled-back migration applies anew
    assert again.applied_now == tuple(NAMES)
    assert read_entries(runtime, [NAMES[0]])[NAMES[0]].job_ids == [f"migrate-{NAMES[0]}-r2-s0"]
    with pytest.raises(JobStateError, match="ran without --backup"):
        runner.rollback(runtime, name, NAMES[2], "tester")


def test_a_bad_migration_module_is_refused_before_anything_is_written(
    runtime, namespace, package, shop
):
    name, path = package
    (path / "0004_nothing.py").write_text("x = 1\n")
    forget(name)
    before = snapshot(runtime, namespace)
    with pytest.raises(ConfigurationError, match="0004_nothing: no module-level 'migration'"):
        apply(runtime, name, namespace)
    assert snapshot(runtime, namespace) == before
    assert read_entries(runtime, NAMES) == {}


def test_cli_lists_pending_exits_1_then_applies_and_exits_0(namespace, package, shop, cli):
    name, path = package
    args = ["--path", str(path.parent), "migrate", "--package", name, "--namespace", namespace]
    listed = cli(*args)
    assert listed.exit_code == 1
    assert "3 pending, 0 changed since applied" in listed.stdout
    audited = cli(*args, "--dry-run")
    assert audited.exit_code == 1
    assert "    Member                         30       30        0          0" in audited.stdout
    applied = cli(*args, "--apply")
    assert applied.exit_code == 0, applied.output
    assert "0 pending, 0 changed since applied" in applied.stdout
    misuse = cli(*args, "--sample", "5")
    assert misuse.exit_code == 2 and "--sample N needs --dry-run" in misuse.output


def test_run_dry_run_reports_per_kind_and_writes_nothing(runtime, namespace, seed, people, cli):
    seed(40)
    result = cli("run", "tests.support.mappers:TouchPeople", "--namespace", namespace, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "    Person                         40       40        0          0" in result.stdout
    assert "dry run: nothing was written" in result.stdout
    assert all(not p.touched for p in people())
    sampled = cli(
        "run",
        "tests.support.mappers:TouchPeople",
        "--namespace",
        namespace,
        "--dry-run",
        "--sample",
        "9",
    )
    assert "    Person                          9        9        0          0" in sampled.stdout
    exactly_once = cli(
        "run",
        "tests.support.mappers:TouchPeople",
        "--namespace",
        namespace,
        "--dry-run",
        "--exactly-once",
    )
    assert (
        "    Person                         40       40        0          0" in exactly_once.stdout
    )
    assert all(not p.touched for p in people())


@pytest.fixture
def app_for(runtime):
    """app_for(package): the repository's app, auth off, with that migrations package."""
    apps = []

    def make(package: str | None):
        settings = runtime.settings.replace(auth="off", migrations_package=package)
        app = create_app(runtime=Runtime(settings))
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["mapper"].close()


def test_http_lists_the_ledger_applies_and_the_status_page_shows_it(
    app_for, runtime, namespace, package, shop
):
    name, _ = package
    client = app_for(name)
    listed = client.get("/_mapper/migrations").get_json()
    assert listed["pending"] == NAMES and listed["package"] == name
    audit = client.post("/_mapper/migrations/apply", json={"dry_run": True, "namespace": namespace})
    assert audit.status_code == 200
    assert audit.get_json()["dry_run"][0]["steps"][0]["kinds"]["Member"]["changed"] == 30

    started = client.post("/_mapper/migrations/apply", json={"namespace": namespace, "by": "ci"})
    assert started.status_code == 202 and started.get_json()["started"]
    deadline = time.monotonic() + 60
    while client.get("/_mapper/migrations").get_json()["pending"]:
        assert time.monotonic() < deadline, "the apply did not finish"
        time.sleep(0.2)
    ledger = client.get("/_mapper/migrations").get_json()
    assert [m["state"] for m in ledger["migrations"]] == ["applied"] * 3
    assert {m["by"] for m in ledger["migrations"]} == {"ci"}
    again = client.post("/_mapper/migrations/apply", json={"namespace": namespace, "wait": True})
    assert again.status_code == 200 and again.get_json()["applied_now"] == []

    page = client.get("/_mapper/").get_data(as_text=True)
    assert f"migrations of {name}" in page
    assert 'id="migration-0003_load_countries" data-state="applied"' in page
    assert f'href="/_mapper/console/migrate-{NAMES[0]}-r1-s0"' in page


def test_http_apply_refuses_clearly(app_for, runtime, package):
    name, _ = package
    client = app_for(name)
    unknown = client.post("/_mapper/migrations/apply", json={"packages": "x"})
    assert (
        unknown.status_code == 400 and "unknown field(s): packages" in unknown.get_json()["error"]
    )
    LedgerLock(runtime, "deploy-9@ci").try_take()
    busy = client.post("/_mapper/migrations/apply", json={})
    assert busy.status_code == 409
    assert "migrations are being applied by deploy-9@ci" in busy.get_json()["error"]
    unset = app_for(None).get("/_mapper/migrations")
    assert unset.status_code == 404 and "MAPPER_MIGRATIONS" in unset.get_json()["error"]
