"""The models the cleanup tests consider current (``--models tests.support.cleanup_models``)."""

from __future__ import annotations

from google.cloud import ndb


class Person(ndb.Model):
    name = ndb.StringProperty()
    active = ndb.BooleanProperty(default=True)
    touched = ndb.IntegerProperty(default=0)
    blob = ndb.BlobProperty()


class Order(ndb.Model):
    person = ndb.KeyProperty(kind="Person")
    watchers = ndb.KeyProperty(kind="Person", repeated=True)
    total = ndb.IntegerProperty()


class Note(ndb.Model):
    """A child of its Person."""

    text = ndb.TextProperty()


class Line(ndb.Model):
    """Depends on an Order (the cascade's reverse reference)."""

    order = ndb.KeyProperty(kind="Order")


class Bag(ndb.Expando):
    """Expando: any property is current."""
