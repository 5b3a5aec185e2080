"""Dispatchers: how a task reaches the code that runs it (in-process or Cloud Tasks)."""

from mapper.dispatch.base import Dispatcher, TaskHandler

__all__ = ["Dispatcher", "TaskHandler"]
