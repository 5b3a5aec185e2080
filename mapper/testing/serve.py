"""``make serve``: the Datastore emulator, the Cloud Tasks emulator and the app, for local work.

    .venv/bin/python -m mapper.testing.serve [--port 8080] [--kind datastore|firestore]

Every slice goes through the tasks emulator to this app, as in production;
auth is off (local only). Ctrl-C stops all three.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

import flask
from werkzeug.serving import make_server

from mapper.settings import Settings
from mapper.testing.emulator import start_emulator
from mapper.testing.tasks_emulator import DEFAULT_QUEUE, start_tasks_emulator
from mapper.web import init_app


def main() -> int:
    parser = argparse.ArgumentParser(description="Run mapper locally on the emulators.")
    parser.add_argument("--port", type=int, default=8080, help="the app's port")
    parser.add_argument("--kind", choices=("datastore", "firestore"), default="datastore")
    parser.add_argument("--project", default="demo")
    args = parser.parse_args()
    # Stop cleanly on SIGTERM as on Ctrl-C; SIGINT explicitly too, because a shell
    # starts background jobs (`make serve &`) with SIGINT ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with (
        start_emulator(args.kind, project=args.project) as datastore,
        start_tasks_emulator(queue=DEFAULT_QUEUE, target_port=args.port) as tasks,
    ):
        os.environ.update(datastore.env)
        settings = Settings(
            project=args.project,
            emulator_host=datastore.host,
            queue=tasks.queue,
            tasks_emulator_host=tasks.host,
            auth="off",
        )
        app = flask.Flask("mapper")
        init_app(app, settings)
        server = make_server("127.0.0.1", args.port, app, threaded=True)
        print(f"""
mapper is serving on http://127.0.0.1:{args.port}/_mapper/  (status page)
  {args.kind} emulator: {datastore.host}    Cloud Tasks emulator: {tasks.host}  queue {tasks.queue}
In another shell:
  export {" ".join(f"{k}={v}" for k, v in datastore.env.items())}
  curl -s -X POST localhost:{args.port}/_mapper/jobs -H 'Content-Type: application/json' \\
       -d '{{"mapper": "examples.models:FillEmailDomain", "shards": 4}}'
  curl -s localhost:{args.port}/_mapper/jobs
Ctrl-C stops the app and both emulators.
""", flush=True)  # fmt: skip
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("stopping ...", file=sys.stderr)
        finally:
            server.server_close()
            app.extensions["mapper"].close()
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
