"""gcloud's managed export (``gcloud datastore export``): LevelDB log files of v3 entities."""
