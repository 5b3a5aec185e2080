"""Built-in stale cleanups: stale kinds and properties, orphans, missing rows; plan, then apply."""
