"""Your project's top-level conftest.py: mapper's pytest plugin gives the fixtures."""

pytest_plugins = ["mapper.testing.pytest_plugin"]
