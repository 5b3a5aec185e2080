"""Work units: one job over many namespaces, planned once at start.

A unit is a namespace, or a key range of a large one. The planner sizes every
namespace (a keys-only probe, many in flight at once), splits the large ones into
pieces of at most half a shard's share by their own keys, and deals the units to
the shards largest first, so shards carry similar work whatever the tenant sizes.
A shard reads its units one after another as one stream (:class:`UnitStream`),
asking for the next units' first pages ahead: a tenant of twenty entities costs
one query, not a round trip of its own, and never a checkpoint of its own.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import heapq
import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from mapper.datastore.keys import key_bytes, key_from_bytes, key_order
from mapper.datastore.metadata import list_namespaces
from mapper.datastore.query import STREAM_PAGE, EntityResult, EntityStream, kind_query, results
from mapper.errors import ConfigurationError, InvalidJobError

if TYPE_CHECKING:
    from mapper.datastore.rpc import Store

#: Keys a namespace is probed for: one with fewer is counted exactly by the probe.
PROBE = 1000
#: Sizing queries in flight at once (each waits on a round trip, not on this process).
IN_FLIGHT = 16
#: Keys kept from a large namespace's key walk to cut it into pieces (evenly spaced).
SAMPLE = 512
#: Units whose first page a shard asks for ahead of the one it reads.
READ_AHEAD = 8
#: Entities (as planned) those units may hold between them: many small tenants are read
#: ahead, large pieces of one are not (eight pieces of a 100,000-entity namespace, each
#: asked for as one page, held the whole namespace in memory).
READ_AHEAD_ENTITIES = 2_000


@dataclasses.dataclass(frozen=True)
class Unit:
    """A namespace, or the key range ``start <= key < end`` of one (None: open)."""

    namespace: str
    start: bytes | None = None
    end: bytes | None = None
    #: Entities it held when planned (the balance, and how much is left to read).
    size: int = 0

    def to_json(self) -> list[Any]:
        hexed = [b.hex() if b else None for b in (self.start, self.end)]
        return [self.namespace, *hexed, self.size]

    @classmethod
    def from_json(cls, data: Sequence[Any]) -> Unit:
        namespace, start, end, size = data
        return cls(namespace, _unhex(start), _unhex(end), size)


def _unhex(text: str | None) -> bytes | None:
    return bytes.fromhex(text) if text else None


# -- which namespaces --------------------------------------------------------------


def check_selection(
    all_namespaces: bool, prefix: str | None, given: Sequence[str] | None, namespace: str
) -> None:
    """Raise InvalidJobError unless at most one way of naming namespaces is used."""
    if not isinstance(all_namespaces, bool):
        raise InvalidJobError(f"all_namespaces must be a boolean, got {all_namespaces!r}")
    if prefix is not None and not isinstance(prefix, str):
        raise InvalidJobError(f"namespace_prefix must be a string, got {prefix!r}")
    if given is not None and (
        not isinstance(given, list | tuple) or not all(isinstance(n, str) for n in given)
    ):
        raise InvalidJobError(f"namespaces must be a list of strings, got {given!r}")
    chosen = [
        name
        for name, used in (
            ("all_namespaces", all_namespaces),
            ("namespace_prefix", prefix is not None),
            ("namespaces", given is not None),
        )
        if used
    ]
    if len(chosen) > 1:
        raise InvalidJobError(f"use one of {', '.join(chosen)}, not several")
    if chosen and namespace:
        raise InvalidJobError(f"namespace {namespace!r} and {chosen[0]} exclude each other")


def select_namespaces(
    store: Store, all_namespaces: bool, prefix: str | None, given: Sequence[str] | None
) -> tuple[list[str], str]:
    """The namespaces a job covers, sorted, and how they were chosen."""
    if given is not None:
        names = sorted(set(given))
        return names, f"{len(names)} namespaces given"
    try:
        listed = list_namespaces(store)
    except ConfigurationError as e:
        raise ConfigurationError(
            f"{e}; name the namespaces instead (--namespaces-from FILE, one per line)"
        ) from e
    if prefix is None:
        return listed, f"all {len(listed)} namespaces"
    names = [name for name in listed if name.startswith(prefix)]
    return names, f"{len(names)} namespaces with prefix {prefix!r}"


def read_namespace_file(path: str) -> list[str]:
    """Namespaces named one per line (``#`` comments and blank lines skipped; a line
    ``""`` is the default namespace)."""
    names = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            name = line.strip()
            if not name or name.startswith("#"):
                continue
            names.append("" if name == '""' else name)
    if not names:
        raise InvalidJobError(f"{path} names no namespace (one per line)")
    return names


# -- sizing ------------------------------------------------------------------------


def measure(
    store: Store, kind: str, namespaces: Sequence[str], shards: int
) -> tuple[dict[str, int], dict[str, list[Any]]]:
    """Entities of ``kind`` per namespace (those holding none left out), and evenly
    spaced keys of the namespaces larger than a piece (to cut them by).

    Every namespace is probed for ``PROBE`` keys; one that fills the probe, or holds
    more than a piece of the total, has its keys walked (keys only): counted, and
    ``SAMPLE`` of them kept.
    """

    def each(function: Callable[[str], Any], names: list[str]) -> dict[str, Any]:
        return dict(zip(names, pool.map(function, names), strict=True))

    with concurrent.futures.ThreadPoolExecutor(IN_FLIGHT) as pool:
        sizes = each(lambda n: _probe(store, kind, n), list(namespaces))
        # The probed sizes are a lower bound of the total: so is the piece.
        piece = _piece_size(sum(sizes.values()), shards)
        larger = [n for n, size in sizes.items() if size > min(PROBE, piece)]
        walked = each(lambda n: _walk(store, kind, n), larger)
    sizes |= {n: count for n, (count, _) in walked.items()}
    samples = {n: keys for n, (_, keys) in walked.items()}
    return {n: s for n, s in sizes.items() if s}, samples


def _probe(store: Store, kind: str, namespace: str, most: int = PROBE + 1) -> int:
    query = kind_query(kind, keys_only=True)
    query.limit.value = most
    return sum(1 for _ in results(store, query, namespace))


def holding_kind(store: Store, kind: str, namespaces: Sequence[str]) -> list[str]:
    """Those of ``namespaces`` holding an entity of ``kind`` (a one-key probe each)."""
    with concurrent.futures.ThreadPoolExecutor(IN_FLIGHT) as pool:
        found = pool.map(lambda n: _probe(store, kind, n, 1), namespaces)
        return [n for n, count in zip(namespaces, found, strict=True) if count]


def _walk(store: Store, kind: str, namespace: str) -> tuple[int, list[Any]]:
    """Count the keys of ``kind`` in ``namespace``; keep every ``stride``-th, thinned so
    that at most ``2 * SAMPLE`` are held."""
    count, stride, kept = 0, 1, []
    query = kind_query(kind, keys_only=True)
    for entity in results(store, query, namespace, page_size=STREAM_PAGE, prefetch=True):
        if count % stride == 0:
            kept.append(entity.key)
            if len(kept) >= 2 * SAMPLE:
                kept, stride = kept[::2], stride * 2
        count += 1
    return count, kept


# -- the plan ----------------------------------------------------------------------


def _piece_size(total: int, shards: int) -> int:
    """The most entities one unit holds: half a shard's share, so the shards dealt to
    largest first differ by at most half a share."""
    return max(1, math.ceil(total / max(1, shards) / 2))


def plan(sizes: dict[str, int], samples: dict[str, list[Any]], shards: int) -> list[list[Unit]]:
    """Units for each shard (at most ``shards``, none empty; one empty shard for no work).

    Namespaces are kept whole up to a piece's size; a larger one is cut into key
    ranges of about a piece each from its sampled keys. Units go to the least loaded
    shard, largest first; each shard reads its units in namespace order.
    """
    piece = _piece_size(sum(sizes.values()), shards)
    units: list[Unit] = []
    for namespace in sorted(sizes):
        units.extend(_cut(namespace, sizes[namespace], samples.get(namespace, []), piece))
    if not units:
        return [[]]
    loads = [(0, index) for index in range(min(shards, len(units)))]
    dealt: list[list[Unit]] = [[] for _ in loads]
    for unit in sorted(units, key=lambda u: -u.size):
        load, index = heapq.heappop(loads)
        dealt[index].append(unit)
        heapq.heappush(loads, (load + unit.size, index))
    return [sorted(each, key=_reading_order) for each in dealt]


def _reading_order(unit: Unit) -> tuple[Any, ...]:
    """Namespace, then key order (a piece of a namespace after the one before it)."""
    start = key_from_bytes(unit.start)
    return (unit.namespace, key_order(start) if start is not None else ())


def _cut(namespace: str, size: int, keys: list[Any], piece: int) -> list[Unit]:
    pieces = min(math.ceil(size / piece), len(keys))
    if pieces <= 1:
        return [Unit(namespace, None, None, size)]
    # keys[i] is about entity i * len(keys) / size: a bound every size / pieces entities.
    bounds = [key_bytes(keys[len(keys) * i // pieces]) for i in range(1, pieces)]
    edges: list[bytes | None] = [None, *dict.fromkeys(bounds), None]
    count = len(edges) - 1
    return [
        Unit(namespace, edges[i], edges[i + 1], size * (i + 1) // count - size * i // count)
        for i in range(count)
    ]


def describe(plan_: list[list[Unit]], selection: str) -> str:
    """The job's ``split`` line: what was chosen and how evenly it was dealt."""
    loads = [sum(u.size for u in units) for units in plan_]
    count = len({u.namespace for units in plan_ for u in units})
    total = sum(loads)
    average = total / len(loads) if loads else 0
    return (
        f"{selection}; {count} hold the kind ({total} entities) -> "
        f"{sum(len(u) for u in plan_)} units over {len(plan_)} shards "
        f"(largest shard {max(loads, default=0)}, average {average:.0f})"
    )


def namespaces_done(shards: Iterable[tuple[list[Unit], int, bool]]) -> tuple[int, int]:
    """How many of the planned namespaces are read through, of how many.

    ``shards``: each shard's units, the index of the unit it reads now, and whether
    it is done. A namespace cut into pieces is done when all of its pieces are.
    """
    pending: collections.Counter[str] = collections.Counter()
    seen: set[str] = set()
    for units, current, done in shards:
        for index, unit in enumerate(units):
            seen.add(unit.namespace)
            if not done and index >= current:
                pending[unit.namespace] += 1
    return len(seen) - len(pending), len(seen)


# -- reading -----------------------------------------------------------------------


class UnitStream:
    """A shard's units read one after another as one stream of EntityResults.

    ``open_unit(unit, after)`` starts a unit's query (after the key ``after``, for
    the unit a checkpoint is in). The next ``READ_AHEAD`` units are opened early, as
    long as ``sizes`` (the units' planned sizes) says they hold READ_AHEAD_ENTITIES at
    most between them: a stream's first page is requested when it is opened.

    ``position`` is what a checkpoint records: a unit and the last key taken from it
    (None: nothing yet). Everything taken comes before it; nothing not taken does.
    With ``per_unit`` a batch ends at the end of its unit (its entities share one
    namespace).
    """

    def __init__(
        self,
        open_unit: Callable[[int, Any | None], EntityStream],
        count: int,
        unit: int,
        after: Any | None,
        per_unit: bool = False,
        sizes: Sequence[int] | None = None,
    ):
        self._open, self._count = open_unit, count
        self._sizes = list(sizes) if sizes is not None else [0] * count
        #: True: a batch ends where a unit does (one namespace a batch).
        self._per_unit = per_unit
        self.unit, self.last = unit, after
        #: The unit of the stream at the head of ``_opened``, and the next one to open.
        self._reading = self._next = unit
        self._after = after
        self._opened: collections.deque[EntityStream] = collections.deque()
        #: The planned sizes of the units opened ahead of the head one.
        self._ahead: collections.deque[int] = collections.deque()
        #: Results put back, each with its unit: taken again before the streams.
        self._front: collections.deque[tuple[int, bytes]] = collections.deque()
        self._taken: list[int] = []
        self._fill()

    @property
    def position(self) -> tuple[int, bytes | None]:
        return self.unit, None if self.last is None else key_bytes(self.last)

    def take(self, size: int) -> list[Any]:
        return [result.entity for result in self.take_results(size)]

    def take_results(self, size: int, max_bytes: int | None = None) -> list[Any]:
        """The next ``size`` results across units (``max_bytes``: as EntityStream's)."""
        taken: list[Any] = []
        self._taken = []
        total = 0
        while len(taken) < size and self._front:
            unit, data = self._front[0]
            if max_bytes is not None and taken and total + len(data) > max_bytes:
                return taken
            self._front.popleft()
            total += len(data)
            taken.append(EntityResult.FromString(data))
            self._taken.append(unit)
            self.unit, self.last = unit, taken[-1].entity.key
        while len(taken) < size and self._opened:
            room = None if max_bytes is None else max_bytes - total
            stream = self._opened[0]
            got = stream.take_results(size - len(taken), room, at_least_one=not taken)
            if got:
                taken.extend(got)
                self._taken.extend([self._reading] * len(got))
                self.unit, self.last = self._reading, got[-1].entity.key
                total += stream.taken_bytes
            if stream.full:
                break  # the batch is full by bytes; the unit goes on
            if len(taken) < size:  # fewer than asked: this unit is read through
                self._advance()
                if self._per_unit and taken:
                    break
        return taken

    def exhausted(self) -> bool:
        """True when no entity follows the ones taken so far."""
        if self._front:
            return False
        while self._opened:
            if not self._opened[0].exhausted():
                return False
            self._advance()
        return True

    def put_back(self, entities: Sequence[Any]) -> None:
        """Return ``entities`` (the last ones taken) to the front of the stream."""
        units = self._taken[len(self._taken) - len(entities) :]
        for unit, entity in zip(reversed(units), reversed(entities), strict=True):
            self._front.appendleft((unit, EntityResult(entity=entity).SerializeToString()))

    def close(self) -> None:
        for each in self._opened:
            each.close()
        self._opened.clear()

    def _advance(self) -> None:
        """The head unit is read through: on to the next (nothing of it taken yet)."""
        self._opened.popleft().close()
        if self._ahead:
            self._ahead.popleft()
        if self._reading + 1 < self._count:
            self._reading += 1
            if not self._front:
                self.unit, self.last = self._reading, None
        self._fill()

    def _fill(self) -> None:
        while self._next < self._count and len(self._opened) < READ_AHEAD:
            size = self._sizes[self._next]
            if self._opened:
                if sum(self._ahead) + size > READ_AHEAD_ENTITIES:
                    return
                self._ahead.append(size)
            after, self._after = self._after, None  # only the checkpoint's unit starts after it
            self._opened.append(self._open(self._next, after))
            self._next += 1
