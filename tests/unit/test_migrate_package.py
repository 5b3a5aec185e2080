"""Loading a migrations package: order, checksums, and bad modules refused with their names."""

from __future__ import annotations

import importlib
import sys
import uuid

import pytest

from mapper.engine.spec import JobSpec
from mapper.errors import ConfigurationError, InvalidJobError
from mapper.migrate.package import load_package
from mapper.migrate.steps import LoadDump, Run

MAPPER = """
from mapper import Mapper
from mapper.migrate import Run


class Touch(Mapper):
    KIND = "Thing"


migration = {value}
"""


@pytest.fixture
def make(tmp_path, monkeypatch):
    """make({file: source}) writes a fresh package and returns its name."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(files: dict[str, str]) -> str:
        name = "pkg_" + uuid.uuid4().hex[:10]
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
        for file, source in files.items():
            (tmp_path / name / file).write_text(source)
        importlib.invalidate_caches()
        return name

    yield write
    for module in [m for m in sys.modules if m.startswith("pkg_")]:
        del sys.modules[module]


def test_migrations_load_in_number_order_with_a_checksum_of_their_source(make):
    package = make(
        {
            "0002_second.py": MAPPER.format(value="[Run(Touch), Touch]"),
            "0001_first.py": MAPPER.format(value="Run(Touch, batch_size=7)"),
            "helpers.py": "",
        }
    )
    first, second = load_package(package)
    assert (first.name, second.name) == ("0001_first", "0002_second")
    assert first.steps[0].batch_size == 7 and len(second.steps) == 2
    assert len(first.checksum) == 64 and first.checksum != second.checksum
    assert first.steps[0].namespace == ""
    assert load_package(package, "tenant-1")[0].steps[0].namespace == "tenant-1"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"01_short.py": ""}, "01_short.py'?: a migration is named NNNN_name.py"),
        (
            {"0001_a.py": MAPPER.format(value="Touch"), "0001_b.py": ""},
            "two migrations numbered 0001: 0001_a.py, 0001_b.py",
        ),
        ({"0001_a.py": "x = 1"}, "0001_a: no module-level 'migration'"),
        ({"0001_a.py": "migration = 42"}, "0001_a: migration must be a Run, a LoadDump"),
        ({"0001_a.py": "import nowhere_at_all"}, "0001_a: cannot import it"),
        (
            {"0001_a.py": MAPPER.format(value="Run(Touch, batch_size=0)")},
            "migration 0001_a step 0: batch_size",
        ),
        (
            {"0001_a.py": "from mapper.migrate import LoadDump\nmigration = LoadDump('nope')"},
            "migration 0001_a step 0: no dump directory",
        ),
        (
            {"0001_a.py": MAPPER.format(value="[]")},
            "migration 0001_a: 1 to 10 steps, got 0",
        ),
    ],
)
def test_a_bad_module_is_refused_naming_it(make, files, message):
    with pytest.raises(ConfigurationError, match=message):
        load_package(make(files))


def test_a_module_is_not_a_package_of_migrations():
    with pytest.raises(ConfigurationError, match="is a module, not a package"):
        load_package("mapper.errors")


def test_audit_options_are_checked_before_any_write():
    with pytest.raises(InvalidJobError, match="sample needs dry_run"):
        JobSpec(mapper="m:C", sample=5).validate()
    with pytest.raises(InvalidJobError, match="does not combine with exactly_once"):
        JobSpec(mapper="m:C", exactly_once=True, before_write={"call": "m:f"}).validate()
    with pytest.raises(InvalidJobError, match="before_write must be"):
        JobSpec(mapper="m:C", before_write={"call": "not a name"}).validate()
    assert JobSpec(mapper="m:C", dry_run=True, sample=3).validate().sample == 3


def test_steps_name_what_they_do():
    assert LoadDump("countries").describe() == "load countries (remap)"
    assert Run(type("X", (), {"__module__": "m"})).describe() == "run m:X"


def test_a_run_step_takes_the_jobs_default_batch_size():
    """The default measured for jobs (docs/performance.md), not a smaller one of its own."""
    step = Run(type("X", (), {"__module__": "m"}))
    assert step.spec("j").batch_size == JobSpec.batch_size
