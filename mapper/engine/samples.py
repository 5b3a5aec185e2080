"""Progress samples: a small bounded list of (time, processed) on each shard record,
added at each checkpoint, from which the console draws rates, ETAs and charts.

The list rides in the shard record the checkpoint writes anyway: no extra write, no
extra record. A record without it (written before samples existed) reads as an empty
list; a version that predates the field skips it when it reads the record (ndb drops
properties a non-Expando model does not declare), so the record format stays 1.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

#: The most samples a shard keeps: older ones are thinned to every other one.
MAX_SAMPLES = 48
#: Samples closer together than this (seconds) replace each other (the newest stays).
MIN_GAP = 1.0


def add_sample(samples: Sequence[Sequence[float]] | None, at: float, processed: int) -> list[Any]:
    """``samples`` with ``[at, processed]`` added, at most MAX_SAMPLES long.

    The first sample is kept; one taken within MIN_GAP of the sample before the
    newest replaces the newest; past the bound, the middle is thinned to every other
    sample (old history coarser, recent history fine).
    """
    kept = [[float(t), int(v)] for t, v in samples or []]
    new = [round(at, 3), int(processed)]
    if len(kept) >= 2 and at - kept[-2][0] < MIN_GAP:
        kept[-1] = new
    else:
        kept.append(new)
    if len(kept) > MAX_SAMPLES:
        kept = kept[:1] + kept[1:-1][1::2] + kept[-1:]
    return kept


def epoch(value: datetime.datetime) -> float:
    """A stored (naive UTC) datetime as seconds since the epoch."""
    return value.replace(tzinfo=datetime.UTC).timestamp()
