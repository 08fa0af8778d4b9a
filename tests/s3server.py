"""A real S3 API on 127.0.0.1 for tests and benchmarks: moto's server, with a WSGI layer in front of it
that records every request (so tests can count LIST and GET calls) and can misbehave on demand.

Run it alone with `python -m tests.s3server` (prints its URL; used by the benchmark as a separate process).
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
from botocore.config import Config
from moto import settings as moto_settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

REGION = "us-east-1"
#: what moto accepts when IAM checks are off; never a real credential
TEST_KEY_ID = "AKIATESTINGKEY000000"
TEST_SECRET = "test-secret-not-a-real-one"


def shared_cache_table(endpoint_url: str, bucket: str, timeout: str = "20s", more: str = "") -> str:
    """A `[shared_cache]` table over `bucket` of the server at `endpoint_url`, folder `outputs/`; the
    default `timeout` is long: a loaded test machine must not turn a write into a skipped one."""
    return f"""
[shared_cache]
bucket = "{bucket}"
folder = "/outputs/"
region = "{REGION}"
endpoint_url = "{endpoint_url}"
access_key_id = "{TEST_KEY_ID}"
secret_access_key = "{TEST_SECRET}"
timeout = "{timeout}"
{more}
"""
#: seconds a held PutObject waits at most (`Faults.hold`)
HOLD_SECONDS = 30.0
_CREDENTIAL = re.compile(r"Credential=([^/]+)/")


class _RequestHandler(MotoRequestHandler):
    def log_request(self, *args) -> None:  # one line per request would drown the test output
        pass


@dataclass(frozen=True)
class S3Call:
    method: str
    bucket: str
    key: str  # decoded; "" for bucket-level calls
    query: dict[str, list[str]]
    key_id: str  # the access key id the request was signed with

    @property
    def is_list(self) -> bool:
        return self.method == "GET" and not self.key and "list-type" in self.query

    @property
    def is_get(self) -> bool:
        return self.method == "GET" and bool(self.key)


@dataclass
class Faults:
    """How the server misbehaves for object GETs (`only_gets`) or every S3 call. Tests set and reset it."""

    status: int | None = None  # answer with this status and `code` instead of asking moto
    code: str = "InternalError"
    delay: float = 0.0  # seconds before answering (cut short by `S3Server.stop`/`reset`)
    truncate_to: int | None = None  # send moto's headers, then only this many body bytes, then close
    only_gets: bool = True
    #: a PutObject of a key starting with `held_puts` is answered only once `hold` is set (at most
    #: `HOLD_SECONDS`): a write still under way
    held_puts: str | None = None
    hold: threading.Event = field(default_factory=threading.Event)

    def applies_to(self, call: S3Call) -> bool:
        return call.is_get or not self.only_gets


@dataclass
class S3Server:
    url: str = ""
    calls: list[S3Call] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()  # ends delays early when the test is over
        self._moto = DomainDispatcherApplication(create_backend_app)
        self._server = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> S3Server:
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_RequestHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._wake.set()
        self.faults.hold.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()  # the port now refuses connections
            self._thread.join(10)
            self._server = None

    def reset(self) -> None:
        """Back to good behaviour, with an empty call log."""
        self._wake.set()
        self.faults.hold.set()
        with self._lock:
            self.faults = Faults()
            self.calls.clear()
        self._wake = threading.Event()

    # -- what reached the server ------------------------------------------------------------------
    def lists(self, bucket: str | None = None) -> list[S3Call]:
        with self._lock:
            return [c for c in self.calls if c.is_list and bucket in (None, c.bucket)]

    def gets(self, bucket: str | None = None) -> list[S3Call]:
        with self._lock:
            return [c for c in self.calls if c.is_get and bucket in (None, c.bucket)]

    # -- clients for fixtures ---------------------------------------------------------------------
    def client(self, service: str = "s3", key_id: str = TEST_KEY_ID, secret: str = TEST_SECRET):
        return boto3.client(service, endpoint_url=self.url, region_name=REGION, aws_access_key_id=key_id,
                            aws_secret_access_key=secret, config=Config(s3={"addressing_style": "path"}))

    def origin_table(self, name: str, bucket: str, *, type: str = "s3", folder: str = "/",
                     key_id: str = TEST_KEY_ID, secret: str = TEST_SECRET, extra: str = "") -> str:
        """An `[[origins]]` table for this server (credentials inline: these are moto's dummies)."""
        return f"""
[[origins]]
name = "{name}"
type = "{type}"
bucket = "{bucket}"
folder = "{folder}"
region = "{REGION}"
endpoint_url = "{self.url}"
access_key_id = "{key_id}"
secret_access_key = "{secret}"
{extra}
"""

    def create_reader(self, bucket: str, *actions: str) -> tuple[str, str]:
        """An IAM user allowed only `actions` (e.g. "s3:GetObject") on `bucket`; its key id and secret."""
        iam = self.client("iam")
        user = f"reader-{bucket}-{len(actions)}-{'-'.join(a.split(':')[1] for a in actions)}"[:64]
        iam.create_user(UserName=user)
        statements = [{"Effect": "Allow", "Action": action,
                       "Resource": f"arn:aws:s3:::{bucket}" + ("" if action == "s3:ListBucket" else "/*")}
                      for action in actions]
        iam.put_user_policy(UserName=user, PolicyName="edge-read",
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def require_auth(self, required: bool) -> None:
        """Turn moto's IAM checks (signature and policy) on or off for every later request."""
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0 if required else float("inf")
        ActionAuthenticatorMixin.request_count = 0

    # -- the WSGI layer ---------------------------------------------------------------------------
    def _app(self, environ, start_response):
        call = _describe(environ)
        with self._lock:
            self.calls.append(call)
            faults, wake = self.faults, self._wake
        if faults.held_puts is not None and call.method == "PUT" and call.key.startswith(faults.held_puts):
            faults.hold.wait(HOLD_SECONDS)
        if not faults.applies_to(call):
            return self._moto(environ, start_response)
        if faults.delay:
            wake.wait(faults.delay)  # the fault under test: a slow store
        if faults.status is not None:
            body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{faults.code}</Code>'
                    f"<Message>injected by the test</Message></Error>").encode()
            start_response(f"{faults.status} Injected", [("Content-Type", "application/xml"),
                                                         ("Content-Length", str(len(body)))])
            return [body]
        if faults.truncate_to is not None:
            return _truncated(self._moto, environ, start_response, faults.truncate_to)
        return self._moto(environ, start_response)


def _describe(environ) -> S3Call:
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
    parts = urlsplit(raw)
    bucket, _, key = parts.path.lstrip("/").partition("/")
    credential = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
    return S3Call(environ["REQUEST_METHOD"], unquote(bucket), unquote(key),
                  parse_qs(parts.query, keep_blank_values=True), credential.group(1) if credential else "")


def _truncated(app, environ, start_response, keep: int):
    """moto's answer with its full Content-Length, but only `keep` body bytes, then the socket closes."""
    captured: dict = {}

    def capture(status, headers, exc_info=None):
        captured.update(status=status, headers=headers)

    body = b"".join(app(environ, capture))
    start_response(captured["status"], captured["headers"])

    def stream():
        yield body[:keep]
        connection = environ["werkzeug.socket"]
        connection.shutdown(socket.SHUT_RDWR)  # the client sees the connection end mid-body

    return stream()


if __name__ == "__main__":  # a stand-alone server for benchmarks: prints its URL, runs until stdin closes
    server = S3Server().start()
    print(json.dumps({"url": server.url}), flush=True)
    sys.stdin.read()
    server.stop()
