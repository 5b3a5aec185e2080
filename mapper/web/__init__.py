"""Flask integration: task endpoints, admin API and status page, mounted with init_app."""

from mapper.web.mount import init_app

__all__ = ["init_app"]
