"""Two blog sites that grew apart: the demo's merge and the import-with-remap tests' fixture.

Both sites use the same numeric ids for their authors, posts and comments, so a
merge must give site B's entities new ids and rewrite every reference to them.
"""

from __future__ import annotations

from typing import Any

from google.cloud import ndb


class Author(ndb.Model):
    name = ndb.StringProperty()


class Tag(ndb.Model):
    name = ndb.StringProperty()


class Post(ndb.Model):
    title = ndb.StringProperty()
    author = ndb.KeyProperty(kind="Author")
    tags = ndb.KeyProperty(kind="Tag", repeated=True)
    related = ndb.KeyProperty(kind="Post")
    config = ndb.KeyProperty(kind="Config")


class Comment(ndb.Model):
    """Always a child of its Post."""

    text = ndb.StringProperty()
    author = ndb.KeyProperty(kind="Author")


class Detail(ndb.Model):
    note = ndb.StringProperty()
    ref = ndb.KeyProperty()


class Activity(ndb.Model):
    label = ndb.StringProperty()
    target = ndb.KeyProperty()  # a Post or a Comment: a generic reference
    detail = ndb.StructuredProperty(Detail)
    details = ndb.LocalStructuredProperty(Detail, repeated=True)


class Config(ndb.Model):
    """A named singleton both sites have."""

    theme = ndb.StringProperty()


def seed_site(site: str, tags: tuple[str, ...]) -> None:
    """Seed one site in the current ndb namespace; ids 1.. collide across sites."""
    authors = [Author(id=i, name=f"{site} author {i}") for i in (1, 2, 3)]
    ndb.put_multi(authors)
    tag_keys = ndb.put_multi([Tag(name=name) for name in tags])
    config = Config(id="site", theme=f"{site} theme")
    config.put()
    gone = Author(id=99, name=f"{site} author deleted before export")
    gone.put()
    p1, p2 = ndb.Key(Post, 1), ndb.Key(Post, 2)
    ndb.put_multi(
        [
            Post(key=p1, title=f"{site} post 1", author=authors[0].key, tags=tag_keys,
                 related=p2, config=config.key),
            Post(key=p2, title=f"{site} post 2", author=gone.key, tags=tag_keys[:1],
                 related=p1),
        ]
    )  # fmt: skip
    gone.key.delete()
    c1 = Comment(parent=p1, id=1, text=f"{site} comment 1", author=authors[1].key)
    c2 = Comment(parent=p2, id=1, text=f"{site} comment 2", author=authors[2].key)
    ndb.put_multi([c1, c2])
    ndb.put_multi(
        [
            Activity(id=1, label=f"{site} activity 1", target=p1,
                     detail=Detail(note="on a post", ref=authors[0].key)),
            Activity(id=2, label=f"{site} activity 2", target=c2.key,
                     details=[Detail(note="on a comment", ref=authors[2].key)]),
        ]
    )  # fmt: skip


def seed_blog(site: str, tags: tuple[str, ...], posts: int, first_id: int = 1) -> None:
    """A bigger site for the demo: ``posts`` posts by 20 authors, two comments each.

    Ids start at ``first_id`` in every site, so two sites collide id for id.
    """
    authors = ndb.put_multi([Author(id=first_id + i, name=f"{site} author {i}") for i in range(20)])
    tag_keys = ndb.put_multi([Tag(name=name) for name in tags])
    Config(id="site", theme=f"{site} theme").put()
    for start in range(0, posts, 250):
        batch = range(start, min(posts, start + 250))
        post_keys = ndb.put_multi(
            [
                Post(id=first_id + i, title=f"{site} post {i}", author=authors[i % 20],
                     tags=[tag_keys[i % len(tag_keys)]],
                     related=ndb.Key(Post, first_id + (i + 1) % posts))
                for i in batch
            ]
        )  # fmt: skip
        ndb.put_multi(
            [
                Comment(parent=key, id=n, text=f"{site} comment {i}.{n}",
                        author=authors[(i + n) % 20])
                for i, key in zip(batch, post_keys, strict=True)
                for n in (1, 2)
            ]
        )  # fmt: skip


def label(key: ndb.Key | None) -> Any:
    """What a reference points at, by content: (kind, name/title/...) or a dangling marker."""
    if key is None:
        return None
    entity = key.get()
    if entity is None:
        return ("dangling", key.kind(), key.id())
    for field in ("name", "title", "text", "label", "theme"):
        if hasattr(entity, field):
            return (key.kind(), getattr(entity, field))
    raise AssertionError(f"no label for {key!r}")


def snapshot() -> dict[Any, Any]:
    """The current namespace by content: every entity and what each reference points at."""
    state: dict[Any, Any] = {}
    for post in Post.query():
        state[label(post.key)] = {
            "author": label(post.author),
            "tags": sorted(label(t) for t in post.tags),
            "related": label(post.related),
            "config": label(post.config),
        }
    for comment in Comment.query():
        state[label(comment.key)] = {
            "parent": label(comment.key.parent()),
            "author": label(comment.author),
        }
    for activity in Activity.query():
        state[label(activity.key)] = {
            "target": label(activity.target),
            "detail": (activity.detail.note, label(activity.detail.ref))
            if activity.detail
            else None,
            "details": [(d.note, label(d.ref)) for d in activity.details],
        }
    for kind in (Author, Tag, Config):
        for entity in kind.query():
            state[label(entity.key)] = "present"
    return state
