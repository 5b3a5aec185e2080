"""The Beam touch pipeline that bench.touch compares with, run under a Python with apache-beam.

    PYTHON -m bench.beam_touch --namespace NS --n N     (prints one JSON line)

ReadFromDatastore | Map(touch) | WriteToDatastore on the DirectRunner with 2 workers
(threads) and write ramp-up throttling off: what a user might pick instead of mapper.
Imports nothing of mapper (its virtualenv has only apache-beam[gcp]).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from bench.common import KIND, RpcCounter, measure


def run(namespace: str) -> None:
    import apache_beam as beam
    from apache_beam.io.gcp.datastore.v1new.datastoreio import ReadFromDatastore, WriteToDatastore
    from apache_beam.io.gcp.datastore.v1new.types import Query
    from apache_beam.options.pipeline_options import PipelineOptions

    project = os.environ["GOOGLE_CLOUD_PROJECT"]
    options = PipelineOptions(
        runner="DirectRunner", direct_num_workers=2, direct_running_mode="multi_threading"
    )

    def touch(entity: Any) -> Any:
        entity.properties["touched"] += 1
        return entity

    with beam.Pipeline(options=options) as pipeline:
        _ = (
            pipeline
            | ReadFromDatastore(Query(kind=KIND, project=project, namespace=namespace))
            | beam.Map(touch)
            | WriteToDatastore(project, throttle_rampup=False)
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--n", type=int, required=True)
    args = parser.parse_args()
    rpcs = RpcCounter()
    result = measure(lambda: run(args.namespace), rpcs)
    print(json.dumps({"variant": "beam", "n": args.n, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
