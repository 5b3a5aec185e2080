"""A blog to import with remap: authors, and posts that refer to them by key."""

from __future__ import annotations

from typing import Any

from google.cloud import datastore


def seed_blog(project: str, namespace: str, authors: int, posts: int) -> None:
    """``authors`` authors and ``posts`` posts in ``namespace``; post i refers to author
    i % authors. Written 500 at a time."""
    client = datastore.Client(project=project, namespace=namespace)
    try:
        keys = []
        for start in range(0, authors, 500):
            batch = [_entity(client, "Author", name=f"author {i}")
                     for i in range(start, min(authors, start + 500))]  # fmt: skip
            client.put_multi(batch)
            keys.extend(a.key for a in batch)
        for start in range(0, posts, 500):
            client.put_multi(
                [
                    _entity(client, "Post", title=f"post {i}", author=keys[i % authors])
                    for i in range(start, min(posts, start + 500))
                ]  # fmt: skip
            )
    finally:
        client.close()


def blog_mistakes(project: str, namespace: str, authors: int, posts: int) -> list[str]:
    """What is wrong with the blog imported into ``namespace``: authors or posts missing
    or doubled, and posts whose reference is not their author's new key. Empty: exact."""
    client = datastore.Client(project=project, namespace=namespace)
    try:
        names = {a.key: a["name"] for a in client.query(kind="Author").fetch()}
        found = list(client.query(kind="Post").fetch())
    finally:
        client.close()
    mistakes = []
    if sorted(names.values()) != sorted(f"author {i}" for i in range(authors)):
        mistakes.append(f"authors: {len(names)} written, {len(set(names.values()))} distinct")
    if sorted(p["title"] for p in found) != sorted(f"post {i}" for i in range(posts)):
        mistakes.append(f"posts: {len(found)} written, {len({p['title'] for p in found})} distinct")
    for post in found:
        if names.get(post["author"]) != f"author {int(post['title'].split()[1]) % authors}":
            mistakes.append(f"{post['title']} refers to {post['author']}")
    return mistakes


def _entity(client: datastore.Client, kind: str, **values: Any) -> datastore.Entity:
    entity = datastore.Entity(client.key(kind))
    entity.update(values)
    return entity
