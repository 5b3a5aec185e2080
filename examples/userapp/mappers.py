"""The app's mappers, next to its models; started as ``mappers:NormalizeEmails``."""

from typing import Any

from mapper import Mapper

from models import Customer


class NormalizeEmails(Mapper):
    """Strip and lowercase the email of every active customer; write only what changes."""

    KIND = Customer
    FILTERS = [(Customer.active, True)]

    def map(self, entity: Customer) -> tuple[list[Any], list[Any]]:
        email = (entity.email or "").strip().lower()
        if email == entity.email:
            return [], []
        entity.email = email
        self.count("normalized")
        return [entity], []
