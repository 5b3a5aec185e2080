"""Data migrations: a package of ordered steps, run once per environment and recorded in a ledger.

A user's migrations package holds modules named in order (``0001_fill_domain.py``,
...), each with a module-level ``migration``: a :class:`Run` of a Mapper, a
:class:`LoadDump`, or a list of them. ``mapper migrate`` (mapper.cli.migrate)
and ``/_mapper/migrations`` (mapper.web) list and apply them.
"""

from mapper.migrate.steps import LoadDump, Run

__all__ = ["LoadDump", "Run"]
