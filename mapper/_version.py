"""The package version: read by the build backend and exported as ``mapper.__version__``."""

__version__ = "0.2.0"
