"""The app's own models: in a real app, whatever it already has."""

from google.cloud import ndb


class Customer(ndb.Model):
    name = ndb.StringProperty()
    email = ndb.StringProperty()
    active = ndb.BooleanProperty(default=True)
