"""Members get ``email_domain`` (new in this release), filled from ``email``."""

from __future__ import annotations

from typing import Any

from examples.shop.models import Member
from mapper import Mapper
from mapper.migrate import Run


class FillEmailDomain(Mapper):
    KIND = Member

    def map(self, member: Member) -> tuple[list[Any], list[Any]] | None:
        if member.email_domain:
            return None  # unchanged: nothing to write
        member.email_domain = member.email.rpartition("@")[2]
        return [member], []


migration = Run(FillEmailDomain, shards=2, batch_size=10)
