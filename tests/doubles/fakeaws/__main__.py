"""``python -m tests.doubles.fakeaws --port N``: serve the fake until SIGTERM/SIGINT.

Prints ``fakeaws listening on http://HOST:PORT`` (flushed) once ready; with
``--port-file`` also writes the port number there (written atomically).
"""

import argparse
import os
import signal
import sys
import threading

from .control import FakeAWS


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tests.doubles.fakeaws", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    p.add_argument("--port-file", help="write the bound port number to this file")
    p.add_argument("--latency-ms", type=float, default=0, help="latency added to every request")
    p.add_argument("--idle-timeout", type=float, default=120.0,
                   help="close idle keep-alive connections after S seconds")
    p.add_argument("--no-auth", action="store_true", help="accept requests without a SigV4 Authorization header")
    p.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = p.parse_args(argv)

    fake = FakeAWS(
        port=args.port,
        host=args.host,
        idle_timeout=args.idle_timeout,
        verbose=args.verbose,
        latency_ms=args.latency_ms,
        require_auth=not args.no_auth,
    )
    fake.start()
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % fake.port)
        os.replace(tmp, args.port_file)
    print("fakeaws listening on %s" % fake.url, flush=True)

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(1.0):
        pass
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
