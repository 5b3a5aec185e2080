"""Flask blueprints: task endpoints, job admin API, status page."""
