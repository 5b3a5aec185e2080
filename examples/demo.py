"""The demo, end to end on the Datastore emulator (started and stopped here).

1. Seed 20,000 customers; run two sharded mappers (fill a field, delete inactive ones).
2. Export the customers to a dump and restore it into another namespace.
3. Seed two blog sites whose ids collide; export site B and merge it into
   site A with key remap; verify every reference; print what happened.
4. Plan a stale cleanup of the merged site (stale kinds, stale properties, orphans).
"""

from __future__ import annotations

import collections
import sys
import tempfile
import time
from typing import Any

from google.cloud import ndb

from examples import blog
from examples.models import Customer, DeleteInactive, FillEmailDomain
from mapper import (
    ExportSpec,
    ImportSpec,
    JobInfo,
    JobStatus,
    Progress,
    Runtime,
    Settings,
    parse_options,
    plan_cleanup,
    start_export,
    start_import,
    summarize_remap,
)
from mapper.testing import start_emulator

CUSTOMERS = 20_000
POSTS = 1_000
DOMAINS = ("example.com", "example.org", "mail.test", "corp.test")
BLOG_KINDS = ["Author", "Tag", "Config", "Post", "Comment", "Activity"]
POST_REFERENCES = ["author", "tags", "related"]


def step(title: str) -> None:
    print(f"\n== {title}")


def seed_customers(rt: Runtime) -> None:
    started = time.monotonic()
    with rt.context(""):
        for start in range(0, CUSTOMERS, 500):
            ndb.put_multi(
                [
                    Customer(
                        name=f"customer {i}",
                        email=f"c{i}@{DOMAINS[i % len(DOMAINS)]}",
                        active=i % 10 != 0,
                    )
                    for i in range(start, min(CUSTOMERS, start + 500))
                ]
            )
    print(f"seeded {CUSTOMERS} customers in {time.monotonic() - started:.1f}s")


def run(rt: Runtime, mapper: Any, total: int, **options: Any) -> JobInfo:
    print(f"running {type(mapper).__name__} ({options})")
    job = mapper.run(runtime=rt, wait=False, **options)
    status = job.wait(progress=Progress(total))
    counters = ", ".join(f"{k}={v}" for k, v in status.counters.items())
    print(f"job {job.id} {status.status.value}: {counters}  [{status.split}]")
    return status


def mappers(rt: Runtime) -> bool:
    step("1. sharded mappers over 20,000 customers")
    seed_customers(rt)
    filled = run(rt, FillEmailDomain(), CUSTOMERS * 9 // 10, shards=4, batch_size=200)
    deleted = run(rt, DeleteInactive(), CUSTOMERS // 10, shards=2, batch_size=200)
    with rt.context(""):
        left = Customer.query().fetch()
    domains = collections.Counter(c.email_domain for c in left)
    print(f"{len(left)} customers left; email_domain per domain: {dict(domains)}")
    return (
        filled.status == deleted.status == JobStatus.SUCCEEDED
        and len(left) == CUSTOMERS * 9 // 10
        and None not in domains
    )


def export_and_restore(rt: Runtime, workdir: str) -> bool:
    step("2. export the customers, restore them into namespace 'restored'")
    out = f"{workdir}/customers"
    status = start_export(rt, ExportSpec(out=out, kinds=["Customer"], shards=4)).wait(
        progress=Progress(CUSTOMERS * 9 // 10)
    )
    print(f"export {status.status.value}: {status.counters['processed']} entities -> {out}")
    plan, job = start_import(rt, ImportSpec(source=out, namespace="restored", shards=4))
    if job is None:
        return False
    restored = job.wait()
    with rt.context("restored"):
        count = Customer.query().count()
    print(f"restore {restored.status.value}: {count} customers in namespace 'restored'")
    return restored.status == JobStatus.SUCCEEDED and count == CUSTOMERS * 9 // 10


def merge_sites(rt: Runtime, workdir: str) -> bool:
    step("3. two blog sites with colliding ids: merge site-b into site-a")
    with rt.context("site-a"):
        blog.seed_blog("A", ("python", "go", "news"), POSTS)
    with rt.context("site-b"):
        blog.seed_blog("B", ("python", "rust", "news"), POSTS)
    print(f"seeded site-a and site-b: {POSTS} posts, {2 * POSTS} comments, 20 authors each")
    out = f"{workdir}/site-b"
    spec = ExportSpec(out=out, kinds=BLOG_KINDS, namespaces=["site-b"], shards=2)
    exported = start_export(rt, spec).wait()
    print(f"exported site-b: {exported.counters['processed']} entities")

    options = parse_options(natural_keys=["Tag=name"])
    merge = ImportSpec(source=out, mode="remap", namespace="site-a", shards=2, options=options)
    plan, _ = start_import(rt, ImportSpec(**{**merge.__dict__, "dry_run": True}))
    print("dry run:")
    print("\n".join(line for line in summarize_remap(plan["remap"]) if not line.startswith("    ")))
    _, run_ = start_import(rt, merge)
    if run_ is None:
        return False
    status = run_.wait(progress=Progress(None))
    c = status.counters
    print(
        f"merge {status.status.value}: {c.get('put', 0)} written, {c.get('allocated', 0)} new ids, "
        f"{c.get('merged', 0)} merged by natural key, "
        f"{c.get('conflict-skipped', 0)} same-name kept from site-a"
    )
    return status.status == JobStatus.SUCCEEDED and verify_merge(rt)


def verify_merge(rt: Runtime) -> bool:
    with rt.context("site-a"):
        posts = blog.Post.query().fetch()
        authors = {a.key: a.name for a in blog.Author.query()}
        tags = collections.Counter(t.name for t in blog.Tag.query())
        comments = blog.Comment.query().fetch()
    posts_by_key = {p.key: p for p in posts}
    site_of = {key: title.split()[0] for key, title in ((p.key, p.title) for p in posts)}
    wrong = [p.title for p in posts if authors.get(p.author, "?").split()[0] != p.title.split()[0]]
    wrong += [p.title for p in posts if site_of.get(p.related) != site_of[p.key]]
    wrong += [c.text for c in comments if posts_by_key[c.key.parent()].title[0] != c.text[0]]
    print(
        f"site-a now: {len(posts)} posts, {len(comments)} comments, {len(authors)} authors, "
        f"tags {dict(tags)}; references pointing at the wrong site: {len(wrong)}"
    )
    return (
        not wrong
        and len(posts) == 2 * POSTS
        and len(comments) == 4 * POSTS
        and all(n == 1 for n in tags.values())
    )


def cleanup_plan(rt: Runtime) -> bool:
    step("4. cleanup plan of the merged site-a (plans only: nothing is deleted)")
    site = {"models": ["examples.blog"], "namespace": "site-a"}
    plans = [
        plan_cleanup(rt, "stale-kinds", site),
        plan_cleanup(rt, "stale-properties", site),
        plan_cleanup(
            rt, "orphans", {**site, "kind": "Post", "properties": ["author", "tags", "related"]}
        ),
        plan_cleanup(
            rt, "orphans", {**site, "kind": "Comment", "properties": ["author"], "parents": True}
        ),
    ]
    for plan in plans:
        print("\n".join(plan.render()))
    return all(plan.empty for plan in plans)


def main() -> int:
    print("starting the Datastore emulator ...")
    results = []
    with start_emulator("datastore", project="mapper-demo") as emulator:
        rt = Runtime(Settings(project=emulator.project, emulator_host=emulator.host))
        try:
            with tempfile.TemporaryDirectory(prefix="mapper-demo-") as workdir:
                results.append(mappers(rt))
                results.append(export_and_restore(rt, workdir))
                results.append(merge_sites(rt, workdir))
                results.append(cleanup_plan(rt))
        finally:
            rt.close()
    ok = all(results)
    print("\nemulator stopped; demo", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
