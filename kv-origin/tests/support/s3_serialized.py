#!/usr/bin/env python3
"""moto's S3 server, with every request run under one lock.

Why: the tests need an S3 server whose conditional PUT (If-None-Match: * and
If-Match: <etag>) is atomic. moto checks the precondition and then stores the
object with nothing held in between, and its server is threaded, so two racing
conditional PUTs can both win (s3s-fs has the same gap). The gap is narrow
until an object passes 5 MiB, when moto writes it to a temporary file in
between, releasing the GIL. Running each whole request, response included,
under one lock makes check-then-store atomic.

Usage: s3_serialized.py [--port N] [--bucket NAME]...

--port 0 (the default) takes a free port. Once listening it prints
`ready http://127.0.0.1:PORT` on stdout. It exits when its stdin closes, so a
killed test run does not leave it behind (only when stdin is a pipe, so
`< /dev/null` or a terminal keeps it running).
"""

import argparse
import os
import stat
import sys
import threading

from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.s3.models import s3_backends
from werkzeug.serving import make_server

try:  # moto's handler keeps header names with underscores; older moto has none
    from moto.moto_server.werkzeug_app import MotoRequestHandler
except ImportError:
    from werkzeug.serving import WSGIRequestHandler as MotoRequestHandler


class Serialized:
    """A WSGI app that runs the wrapped app one request at a time."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            body = self.app(environ, start_response)
            try:
                # Drain the response inside the lock too: a WSGI app may do
                # its work lazily, while the server iterates the body.
                return list(body)
            finally:
                if hasattr(body, "close"):
                    body.close()


class QuietHandler(MotoRequestHandler):
    """No line on stderr for every request; errors are still logged."""

    def log_request(self, code="-", size="-"):
        pass


def exit_when_stdin_closes():
    # The parent holds our stdin open; EOF means it is gone.
    sys.stdin.buffer.read()
    os._exit(0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--bucket", action="append", default=[])
    args = ap.parse_args()

    # Buckets go straight into moto's in-process backend, the one the server
    # answers from, so no signed CreateBucket is needed. Requests with any
    # access key that IAM does not know belong to the default account.
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for name in args.bucket:
        backend.create_bucket(name, "us-east-1")

    app = Serialized(DomainDispatcherApplication(create_backend_app))
    server = make_server(
        "127.0.0.1", args.port, app, threaded=True, request_handler=QuietHandler
    )
    # moto builds some URLs (e.g. presigned ones) from MOTO_PORT.
    os.environ["MOTO_PORT"] = str(server.server_port)

    if stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
        threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    print(f"ready http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
