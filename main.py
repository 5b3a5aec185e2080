"""The WSGI entry point for App Engine and gunicorn: ``gunicorn main:app``."""

from handlers import create_app

app = create_app()
