"""The app's WSGI entry point (``gunicorn main:app``): its own views, with mapper's mounted.

``mapper.web.init_app`` reads its settings from the environment (app.yaml's
``env_variables``) and adds, under ``MAPPER_URL_PREFIX`` (``/_mapper``), the
task endpoints Cloud Tasks calls, the admin API and the status page.
"""

import flask
import mapper.web
from google.cloud import ndb

from models import Customer

app = flask.Flask(__name__)
ndb_client = ndb.Client()


@app.get("/")
def index() -> dict[str, int]:
    """One of the app's own views: it keeps working beside mapper's."""
    with ndb_client.context():
        return {"customers": Customer.query().count(limit=1000)}


mapper.web.init_app(app)
