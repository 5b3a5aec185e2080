"""Import with key remap: merge site B into site A without losing a reference."""

from __future__ import annotations

import pytest
from google.cloud import ndb

from examples import blog as sites
from examples.blog import Author, Config, Post, Tag
from mapper.dispatch.messages import SliceTask
from mapper.errors import ConfigurationError
from mapper.transfer.export import ExportSpec, start_export
from mapper.transfer.importer import ImportSpec, start_import
from mapper.transfer.options import parse_options

KINDS = ["Activity", "Author", "Comment", "Config", "Post", "Tag"]


@pytest.fixture
def two_sites(runtime, namespace, tmp_path):
    """Site A lives in the test namespace; site B is exported to a dump. Returns the dump path."""
    site_b = namespace + "b"
    with runtime.context(namespace):
        sites.seed_site("A", ("python", "go"))
    with runtime.context(site_b):
        sites.seed_site("B", ("python", "rust"))
    out = str(tmp_path / "site-b")
    spec = ExportSpec(out=out, kinds=KINDS, namespaces=[site_b], batch_size=3, shards=2)
    assert start_export(runtime, spec).wait(timeout=120).status == "succeeded"
    return out


def snapshot(runtime, namespace):
    with runtime.context(namespace):
        return sites.snapshot()


def merge(runtime, namespace, dump, timeout=180, **options):
    spec = ImportSpec(
        source=dump,
        mode="remap",
        namespace=namespace,
        shards=2,
        batch_size=1,
        options=parse_options(natural_keys=["Tag=name"], **options),
    )
    plan, run = start_import(runtime, spec)
    return run.wait(timeout=timeout)


def expected_b(dangling_author):
    return {
        ("Post", "B post 1"): {
            "author": ("Author", "B author 1"),
            "tags": [("Tag", "python"), ("Tag", "rust")],
            "related": ("Post", "B post 2"),
            "config": ("Config", "A theme"),  # same name in both sites: A's is kept (skip)
        },
        ("Post", "B post 2"): {
            "author": dangling_author,
            "tags": [("Tag", "python")],
            "related": ("Post", "B post 1"),  # the cycle survives
            "config": None,
        },
        ("Comment", "B comment 1"): {
            "parent": ("Post", "B post 1"),
            "author": ("Author", "B author 2"),
        },
        ("Comment", "B comment 2"): {
            "parent": ("Post", "B post 2"),
            "author": ("Author", "B author 3"),
        },
        ("Activity", "B activity 1"): {
            "target": ("Post", "B post 1"),
            "detail": ("on a post", ("Author", "B author 1")),
            "details": [],
        },
        ("Activity", "B activity 2"): {
            "target": ("Comment", "B comment 2"),
            "detail": None,
            "details": [("on a comment", ("Author", "B author 3"))],
        },
        **{("Author", f"B author {i}"): "present" for i in (1, 2, 3)},
        ("Tag", "rust"): "present",
    }


def counts(runtime, namespace):
    with runtime.context(namespace):
        return {kind.__name__: kind.query().count() for kind in (Author, Tag, Post, Config)}


def test_merge_gives_b_new_ids_and_every_reference_follows(runtime, namespace, two_sites):
    before = snapshot(runtime, namespace)
    with runtime.context(namespace):
        a_raw = {e.key: e.to_dict() for kind in (Author, Post, Tag) for e in kind.query()}
    status = merge(runtime, namespace, two_sites)
    assert status.status == "succeeded", status
    after = snapshot(runtime, namespace)

    dangling = ("dangling", "Author", 99)
    assert after == {**before, **expected_b(dangling)}
    assert counts(runtime, namespace) == {"Author": 6, "Tag": 3, "Post": 4, "Config": 1}
    with runtime.context(namespace):
        # Site A is untouched, key for key.
        assert {k: k.get().to_dict() for k in a_raw} == a_raw
        # B's authors got new ids: none reuses A's 1, 2, 3.
        b_ids = {a.key.id() for a in Author.query() if a.name.startswith("B")}
        assert len(b_ids) == 3 and not b_ids & {1, 2, 3}
        python = Tag.query(Tag.name == "python").fetch()
        assert len(python) == 1  # merged by natural key, not duplicated
    c = status.counters
    assert c["merged"] == 1 and c["conflict-skipped"] == 1
    assert c["allocated"] == 3 + 1 + 2 + 2 + 2  # authors, rust, posts, comments, activities
    assert c["put"] == 3 + 1 + 2 + 2 + 2
    assert c["dangling"] == 1


def test_dangling_null_clears_the_reference(runtime, namespace, two_sites):
    status = merge(runtime, namespace, two_sites, dangling="null")
    assert status.status == "succeeded"
    after = snapshot(runtime, namespace)
    assert after[("Post", "B post 2")]["author"] is None


def test_dangling_fail_refuses_before_writing_any_entity(runtime, namespace, two_sites):
    before = counts(runtime, namespace)
    status = merge(runtime, namespace, two_sites, dangling="fail")
    assert status.status == "failed"
    assert "references Key('Author', 99" in status.error
    assert "--dangling fail" in status.error
    assert counts(runtime, namespace) == before


def test_on_conflict_overwrite_replaces_the_same_name_entity(runtime, namespace, two_sites):
    merge(runtime, namespace, two_sites, on_conflict="overwrite")
    with runtime.context(namespace):
        configs = Config.query().fetch()
    # Overwritten in place: one Config, B's, under the same name (no second entity).
    assert [(c.key.id(), c.theme) for c in configs] == [("site", "B theme")]


def test_rename_names_prefix_keeps_both_named_entities(runtime, namespace, two_sites):
    merge(runtime, namespace, two_sites, rename_names="b-")
    with runtime.context(namespace):
        assert Config.get_by_id("site").theme == "A theme"
        assert Config.get_by_id("b-site").theme == "B theme"
        post = Post.query(Post.title == "B post 1").get()
        assert post.config == ndb.Key(Config, "b-site")


def test_schema_drift_defaults_renames_and_drops(runtime, namespace, two_sites):
    merge(
        runtime,
        namespace,
        two_sites,
        renames=["Author.name=display_name"],
        defaults=["Author.name=@display_name", "Post.views=0", "Post.imported=now"],
        drops=["Activity.detail"],
    )
    posts = raw_by(runtime, namespace, "Post", "title")
    assert "views" not in posts["A post 1"].properties  # A is untouched: no defaults
    assert posts["B post 1"].properties["views"].integer_value == 0
    assert posts["B post 1"].properties["imported"].WhichOneof("value_type") == "timestamp_value"
    authors = raw_by(runtime, namespace, "Author", "display_name")
    assert authors["B author 1"].properties["name"].string_value == "B author 1"  # copied
    activities = raw_by(runtime, namespace, "Activity", "label")
    assert not [p for p in activities["B activity 1"].properties if p.startswith("detail.")]
    assert "detail.note" in activities["A activity 1"].properties


def raw_by(runtime, namespace, kind, prop):
    """Raw entities of ``kind`` by the string value of ``prop``."""
    results = runtime.store.run_query(_kind_query(kind), namespace).entity_results
    return {
        r.entity.properties[prop].string_value: r.entity
        for r in results
        if prop in r.entity.properties
    }


def _kind_query(kind):
    from mapper.datastore.query import shard_query

    return shard_query(kind, [], None, None, None, 100)


@pytest.mark.parametrize(
    "point",
    ["after_allocate", "after_map_write", "after_write", "before_finish"],
)
def test_merge_is_idempotent_under_crashes(runtime, namespace, two_sites, faults, point):
    faults.crash_at(point, times=2)
    status = merge(runtime, namespace, two_sites)
    assert status.status == "succeeded", status
    assert faults.fired[point] == 2
    assert counts(runtime, namespace) == {"Author": 6, "Tag": 3, "Post": 4, "Config": 1}
    after = snapshot(runtime, namespace)
    merged_b = {k: v for k, v in after.items() if k[1].startswith(("B", "rust"))}
    assert merged_b == expected_b(("dangling", "Author", 99))


def test_merge_is_idempotent_under_duplicate_delivery(runtime, namespace, two_sites, faults):
    def duplicate(point, info):
        if point == "after_checkpoint":
            runtime.dispatcher.deliver(SliceTask(info["job_id"], info["shard"], info["slice"], 0))

    runtime.faults = lambda point, info: (duplicate(point, info), faults(point, info))
    status = merge(runtime, namespace, two_sites)
    assert status.status == "succeeded"
    assert counts(runtime, namespace) == {"Author": 6, "Tag": 3, "Post": 4, "Config": 1}
    assert (
        snapshot(runtime, namespace)[("Post", "B post 1")] == expected_b(None)[("Post", "B post 1")]
    )


def test_remap_options_are_checked_before_anything_runs():
    with pytest.raises(ConfigurationError, match="KIND=PROP"):
        parse_options(natural_keys=["Tag"])
    with pytest.raises(ConfigurationError, match="--dangling"):
        parse_options(dangling="drop")
    with pytest.raises(ConfigurationError, match="--mode remap"):
        ImportSpec(source="x", mode="keep", options=parse_options(drops=["A.b"])).validate()


def test_dry_run_reports_inserts_merges_conflicts_and_dangling_and_writes_nothing(
    runtime, namespace, two_sites
):
    before = counts(runtime, namespace)
    spec = ImportSpec(
        source=two_sites,
        mode="remap",
        namespace=namespace,
        dry_run=True,
        options=parse_options(natural_keys=["Tag=name"]),
    )
    plan, run = start_import(runtime, spec)
    assert run is None
    report = plan["remap"]
    assert report["Tag"]["merges"] == 1 and report["Tag"]["inserts"] == 1
    assert report["Config"]["conflicts"] == 1
    assert report["Post"]["dangling"] == 1
    assert "Author', 99" in report["Post"]["samples"]["dangling"][0]
    assert report["Author"]["inserts"] == 3 and report["Comment"]["inserts"] == 2
    assert counts(runtime, namespace) == before
    from mapper.transfer.keymap import KIND as KEYMAP_KIND

    assert runtime.store.run_query(_kind_query(KEYMAP_KIND), namespace).entity_results == []


def test_cli_merge_prints_the_plan_and_what_was_remapped(cli, runtime, namespace, two_sites):
    args = ["import", two_sites, "--mode", "remap", "--namespace", namespace]
    args += ["--natural-key", "Tag=name", "--shards", "2"]
    dry = cli(*args, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "remap plan:" in dry.output and "dry run: nothing was written" in dry.output
    done = cli(*args)
    assert done.exit_code == 0, done.output
    assert "succeeded: 10 entities written" in done.output
    assert "allocated=10, named=0, merged=1, conflict-skipped=1" in done.output
    assert counts(runtime, namespace) == {"Author": 6, "Tag": 3, "Post": 4, "Config": 1}
    bad = cli("import", two_sites, "--mode", "keep", "--natural-key", "Tag=name")
    assert bad.exit_code == 2
    assert "--natural-key) need --mode remap" in bad.output


def test_key_map_records_exist_only_for_kinds_something_refers_to(runtime, namespace, two_sites):
    from mapper.datastore.rpc import Key
    from mapper.transfer.keymap import KIND as KEYMAP_KIND

    assert merge(runtime, namespace, two_sites).status == "succeeded"
    records = runtime.store.run_query(_kind_query(KEYMAP_KIND), namespace).entity_results
    kinds = {Key.FromString(r.entity.properties["old"].blob_value).path[-1].kind for r in records}
    # Activities are referenced by nothing: the part records alone map them.
    assert kinds == {"Author", "Comment", "Config", "Post", "Tag"}
