"""The embedded S3 (moto, server mode) as its own process: IAM auth on, AWS APIs only.

Run by `devstack.s3_server.EmbeddedS3` as `python -m devstack._moto_server`, with
`INITIAL_NO_AUTH_ACTION_COUNT` set to `BOOTSTRAP_CALLS`: moto lets exactly that many requests
through unauthenticated, which this process spends creating its admin user. From then on every
request needs valid credentials and is checked against the caller's policies (with AWS's
semantics: `devstack.iam_eval`). When ready it prints one JSON line on stdout with its port and
the admin credentials, then serves until its stdin closes, i.e. until the parent closes it or
dies.

moto runs in a process of its own because its state and auth switch are process-global: inside
the parent they would change the behaviour of any in-process `mock_aws` there.

Refused here, before moto sees them: moto's control API (`/moto-api/...`, which would let anyone
reset state or switch auth off), its EC2 instance-metadata emulation, and S3 copies
(`x-amz-copy-source`), for which moto never checks read permission on the source.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from devstack import iam_eval

#: Unauthenticated requests the admin bootstrap makes (create user, attach policy, create key).
BOOTSTRAP_CALLS = 3
ADMIN_USER = "devstack-admin"
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
    endpoint = f"http://127.0.0.1:{server.server_port}"
    admin = _bootstrap_admin(endpoint)
    _check_auth_is_on(endpoint)
    sys.stdout.write(json.dumps({"port": server.server_port, **admin}) + "\n")
    sys.stdout.flush()
    sys.stdin.read()  # returns at EOF: the parent is done with us
    server.shutdown()
    serving.join()


def _bootstrap_admin(endpoint: str) -> dict[str, str]:
    # boto3 and the stack's access are imported here, in the child: the parent imports this
    # module for BOOTSTRAP_CALLS before anything heavy (`devstack.launch`).
    import boto3  # noqa: PLC0415

    from devstack.access import REGION  # noqa: PLC0415

    iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION,
                       aws_access_key_id="bootstrap",
                       aws_secret_access_key="bootstrap")  # noqa: S106 - moto ignores them here
    user = iam.create_user(UserName=ADMIN_USER)["User"]
    iam.put_user_policy(UserName=ADMIN_USER, PolicyName="admin",
                        PolicyDocument=json.dumps(_ADMIN_POLICY))
    key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
    return {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"],
            "admin_arn": user["Arn"]}


def _check_auth_is_on(endpoint: str) -> None:
    # Fail closed: if moto ever stopped enforcing auth, no credential we mint would mean anything.
    import boto3  # noqa: PLC0415 - see _bootstrap_admin
    from botocore.exceptions import ClientError  # noqa: PLC0415

    from devstack.access import REGION  # noqa: PLC0415

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                      aws_access_key_id="AKIAUNKNOWNUNKNOWN00",
                      aws_secret_access_key="unknown")  # noqa: S106 - deliberately invalid
    try:
        s3.list_buckets()
    except ClientError:
        return
    raise SystemExit("moto accepted unknown credentials: IAM auth is not on")


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
