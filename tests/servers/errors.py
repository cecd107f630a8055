"""Exceptions raised by the private-server helpers.

Two kinds are kept apart on purpose: a test suite may turn `ServerUnavailable`
into a skip (this machine simply cannot have that server, e.g. the Debian sid
registry is unreachable), but a server that *was* available and then failed to
start or stop is a real failure and must never be skipped by accident, so it
raises `ServerStartError`, which is not a subclass of `ServerUnavailable`.
"""


class ServerUnavailable(Exception):
    """The server software cannot be obtained or run on this machine.

    `reason` is a one-line human explanation (also the exception message).
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ServerStartError(RuntimeError):
    """The server software is present but the server failed to start or stop.

    The message carries the tail of the server's error log.
    """
