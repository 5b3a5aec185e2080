"""ndb global cache coherence: mapper's raw commits follow ndb's own cache protocol.

Apps that read through python-ndb's global cache (``RedisCache`` on Memorystore,
``MemcacheCache``) keep serving cached entities until they are evicted, and ndb
sets no expiry by default. mapper commits raw protobufs, not through ndb, so
with ``MAPPER_NDB_GLOBAL_CACHE`` naming the app's cache every commit does what
ndb's own put and delete do: lock each written key for write before the commit
and unlock it after. A reader that races the commit finds the key locked, reads
Datastore and caches nothing; the first read after the unlock caches the new
entity (or learns the key is gone).

The lock and unlock are ndb's own functions (``google.cloud.ndb._cache``), run in
an ndb context that has the app's cache, so the values and keys in the cache are
byte for byte what the app's ndb expects.
"""

from __future__ import annotations

import importlib
import urllib.parse
from collections.abc import Sequence
from typing import Any

from google.cloud import ndb
from google.cloud.datastore import helpers
from google.cloud.ndb import _cache

from mapper.errors import ConfigurationError


def global_cache_from(spec: str) -> Any:
    """The ndb GlobalCache ``spec`` names.

    ``redis://HOST:PORT/DB``, ``memcached://HOST:PORT``, or ``module:callable``
    returning a ``google.cloud.ndb.GlobalCache``.
    """
    parsed = urllib.parse.urlsplit(spec)
    if parsed.scheme in ("redis", "rediss"):
        import redis  # noqa: PLC0415 - a dependency of ndb, needed only for this cache

        return ndb.RedisCache(redis.Redis.from_url(spec))
    if parsed.scheme == "memcached":
        import pymemcache  # noqa: PLC0415 - a dependency of ndb, needed only for this cache

        if not parsed.hostname:
            raise ConfigurationError(f"MAPPER_NDB_GLOBAL_CACHE needs a host: {spec!r}")
        # Pooled, as ndb's own MemcacheCache.from_environment builds it: shards run on
        # several threads, and one pymemcache connection is not thread-safe.
        server = (parsed.hostname, parsed.port or 11211)
        return ndb.MemcacheCache(pymemcache.PooledClient(server, max_pool_size=8))
    module_name, sep, name = spec.partition(":")
    if sep and module_name and name and "/" not in spec:
        try:
            factory = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError) as e:
            raise ConfigurationError(f"MAPPER_NDB_GLOBAL_CACHE {spec!r}: {e}") from e
        return factory()
    raise ConfigurationError(
        "MAPPER_NDB_GLOBAL_CACHE must be redis://HOST:PORT/DB, memcached://HOST:PORT or "
        f"module:callable, got {spec!r}"
    )


class CacheCoherence:
    """Locks written keys in the app's ndb global cache around a commit."""

    def __init__(self, client: ndb.Client, global_cache: Any):
        self.client = client
        self.global_cache = global_cache

    def lock(self, keys: Sequence[Any]) -> list[tuple[bytes, bytes]]:
        """Lock ``keys`` (raw Key protobufs) for write; returns what :meth:`unlock` takes."""
        cache_keys = [_cache.global_cache_key(helpers.key_from_protobuf(k)) for k in keys]
        with self._context():
            futures = [_cache.global_lock_for_write(k) for k in cache_keys]
            return [(k, f.result()) for k, f in zip(cache_keys, futures, strict=True)]

    def unlock(self, locks: list[tuple[bytes, bytes]]) -> None:
        """Release the locks: the next ndb read of each key goes to Datastore and caches."""
        with self._context():
            futures = [_cache.global_unlock_for_write(k, lock) for k, lock in locks]
            for future in futures:
                future.result()

    def _context(self) -> Any:
        current = ndb.get_context(raise_context_error=False)
        if current is not None:
            return current.new(global_cache=self.global_cache, global_cache_policy=None).use()
        return self.client.context(global_cache=self.global_cache, cache_policy=False)
