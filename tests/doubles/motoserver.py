"""moto's server on a free 127.0.0.1 port, reset: the independent AWS implementation that
tests (test_moto, test_export) and the export benchmark check us against."""

from __future__ import annotations

import contextlib
import urllib.request
from typing import Iterator

from moto.server import ThreadedMotoServer

from tests.servers import free_port


def start_moto() -> tuple[ThreadedMotoServer, str]:
    """(server, url); the caller stops the server."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    # moto's backends are process-wide: forget what other users queued there.
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST")).read()
    return server, url


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """The url of a running, reset moto server, stopped on exit."""
    server, url = start_moto()
    try:
        yield url
    finally:
        server.stop()
