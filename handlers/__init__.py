"""This repository's own service (main.py): create_app wires mapper.web."""

from handlers.app import create_app

__all__ = ["create_app"]
