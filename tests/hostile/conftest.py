"""The server fixtures of ``tests/server`` (in-process servers on 127.0.0.1:0), shared here."""

from tests.server.conftest import start_server

__all__ = ["start_server"]
