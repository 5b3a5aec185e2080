"""Flask blueprints: task endpoints, the job admin API and the status page."""

from handlers.app import create_app

__all__ = ["create_app"]
