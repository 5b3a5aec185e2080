"""Reference data: the countries dump beside this module, merged by ``code`` (a country that
is already there keeps its key; loading it again inserts nothing)."""

from __future__ import annotations

from mapper.migrate import LoadDump

migration = LoadDump("countries", mode="remap", options={"natural_keys": ["Country=code"]})
