"""The shop's models as they are now; ``seed`` writes data as the previous release left it."""

from __future__ import annotations

from google.cloud import ndb


class Member(ndb.Model):
    name = ndb.StringProperty()
    email = ndb.StringProperty()
    #: New in this release: filled for old members by 0001_fill_email_domain.
    email_domain = ndb.StringProperty()


class Product(ndb.Model):
    name = ndb.StringProperty()
    #: Was ``price`` (in cents) before this release: 0002_rename_product_price moves it.
    price_cents = ndb.IntegerProperty()


class Country(ndb.Model):
    """Reference data, loaded (and merged by ``code``) by 0003_load_countries."""

    code = ndb.StringProperty()
    name = ndb.StringProperty()
