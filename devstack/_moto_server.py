"""The embedded S3 (moto, server mode) as its own process: IAM auth on, AWS APIs only.

Run by `devstack.s3_server.EmbeddedS3` as `python -m devstack._moto_server`, with
`INITIAL_NO_AUTH_ACTION_COUNT` set to 0: every request needs valid credentials and is checked
against the caller's policies (with AWS's semantics: `devstack.iam_eval`). The admin user is
created in moto's IAM backend directly, in this process, before the first request (no SDK
client: making one cost a fifth of this process's start). When ready it prints one JSON line
on stdout with its port and the admin credentials, then serves until its stdin closes, i.e.
until the parent closes it or dies.

moto runs in a process of its own because its state and auth switch are process-global: inside
the parent they would change the behaviour of any in-process `mock_aws` there.

Refused here, before moto sees them: moto's control API (`/moto-api/...`, which would let anyone
reset state or switch auth off), its EC2 instance-metadata emulation, and S3 copies
(`x-amz-copy-source`), for which moto never checks read permission on the source.
"""

from __future__ import annotations

import http.client
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from devstack import iam_eval

ADMIN_USER = "devstack-admin"
#: The stack's region (`devstack.access.REGION`, not imported: this module stays light).
_REGION = "us-east-1"
_ADMIN_POLICY = {"Version": "2012-10-17",
                 "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def main() -> None:
    """Serve until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from moto.moto_server.werkzeug_app import (  # noqa: PLC0415 - after the env is read
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server  # noqa: PLC0415 - with moto

    iam_eval.install()
    app = _guard(DomainDispatcherApplication(create_backend_app))
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0  # 0: the OS picks
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    # A short poll: stopping waits for the serving loop's next look at its shutdown flag.
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                               daemon=True)
    serving.start()
    admin = _bootstrap_admin()
    _check_auth_is_on(server.server_port)
    sys.stdout.write(json.dumps({"port": server.server_port, **admin}) + "\n")
    sys.stdout.flush()
    sys.stdin.read()  # returns at EOF: the parent is done with us
    server.shutdown()
    serving.join()


def _bootstrap_admin() -> dict[str, str]:
    from moto.core.models import DEFAULT_ACCOUNT_ID  # noqa: PLC0415 - after the env is read
    from moto.iam.models import iam_backends  # noqa: PLC0415

    iam = iam_backends[DEFAULT_ACCOUNT_ID]["global"]
    user = iam.create_user(_REGION, ADMIN_USER)
    iam.put_user_policy(ADMIN_USER, "admin", json.dumps(_ADMIN_POLICY))
    key = iam.create_access_key(ADMIN_USER)
    return {"access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key,
            "admin_arn": user.arn}


def _check_auth_is_on(port: int) -> None:
    """Fail closed: if moto ever stopped enforcing auth, no credential we mint would mean
    anything. A listing signed by a key no one has must be refused."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    unknown = (f"AWS4-HMAC-SHA256 Credential=AKIAUNKNOWNUNKNOWN00/{stamp[:8]}/{_REGION}/s3/"
               f"aws4_request, SignedHeaders=host;x-amz-date, Signature={'0' * 64}")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/", headers={"Authorization": unknown, "X-Amz-Date": stamp,
                                                "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
        status = connection.getresponse().status
    finally:
        connection.close()
    if status != HTTPStatus.FORBIDDEN:
        raise SystemExit(f"moto answered {status} to an unknown key: IAM auth is not on")


def _guard(app: WsgiApp) -> WsgiApp:
    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith(("/moto-api", "/latest/")):
            return _refuse(start_response, "403 Forbidden", "text/plain",
                           b"not available in the local stack\n")
        if "HTTP_X_AMZ_COPY_SOURCE" in environ:
            return _refuse(start_response, "403 Forbidden", "application/xml", _s3_error(
                "AccessDenied", "S3 copies are not supported by the local stack: read the "
                "object and put it instead"))
        return app(environ, start_response)

    return guarded


def _refuse(start_response: StartResponse, status: str, content_type: str,
            body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def _s3_error(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error>").encode()


if __name__ == "__main__":
    main()
