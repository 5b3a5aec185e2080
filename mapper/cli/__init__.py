"""The ``mapper`` command: a click group and its commands."""
