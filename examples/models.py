"""Sample models and mappers the demo runs (``examples.models:Class``)."""

from __future__ import annotations

from typing import Any

from google.cloud import ndb

from mapper import Mapper


class Customer(ndb.Model):
    name = ndb.StringProperty()
    email = ndb.StringProperty()
    active = ndb.BooleanProperty(default=True)
    email_domain = ndb.StringProperty()


class FillEmailDomain(Mapper):
    """Backfill ``email_domain`` from ``email`` for active customers."""

    KIND = Customer
    FILTERS = [(Customer.active, True)]

    def map(self, entity: Customer) -> tuple[list[Any], list[Any]]:
        entity.email_domain = entity.email.rpartition("@")[2]
        self.count("domains_filled")
        return [entity], []


class DeleteInactive(Mapper):
    """Delete customers marked inactive."""

    KIND = Customer
    FILTERS = [(Customer.active, False)]

    def map(self, entity: Customer) -> tuple[list[Any], list[Any]]:
        return [], [entity.key]
