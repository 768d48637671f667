"""Composition root: builds Settings, the database and the clients, and starts the chosen roles."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tradedesk")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0"
