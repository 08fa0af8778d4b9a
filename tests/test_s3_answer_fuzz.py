"""Answers of a hostile or broken S3-compatible store (a raw TCP server that writes whatever bytes the test
chose) to what the node reads S3 with: the `s3` origin's GetObject, the `cloudinary_backup` origin's
ListObjectsV2 and GetObject, and the fleet's shared tier and purge journal (GetObject, PutObject,
ListObjectsV2, DeleteObjects). Error XML malformed, huge or with odd codes, every status class, headers S3
would never send (a `Last-Modified` that is not a date, a part count that is not a number), listings without
keys, with dates that are not dates, truncated forever; bodies short, long, or none. Every call ends in the
origin API's own outcomes (an original, not found, not modified, an `OriginFailure`, too large) within its
time; a client gets an image or a 404/502/503/504, never a 500; the node is none the worse afterwards
(tests/test_origin_answer_fuzz.py is the same for a `web` origin)."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socketserver
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.origin import Original, OriginFailure, OriginNotFound, OriginRequest, OriginSettings, SourceTooLarge
from edge.settings import ConfigTable
from edge_builtin_origins.cloudinary_backup import CloudinaryBackupOrigin
from edge_builtin_origins.s3 import QUOTED_KEY_CHARS, S3Origin, quoted_key
from tests.fuzzing import decoded, exchange, fuzz_settings
from tests.nodes import SAMPLES, NodeProcess, local_config, write_config
from tests.s3server import shared_cache_table
from tests.servers import RawServer

EXAMPLES = 120
TIMEOUT = 2.0
#: a call and the chain's timeout around it, on a busy machine
BOUND = TIMEOUT + 10
JPEG = (SAMPLES / "astronaut.jpg").read_bytes()
KEY_ID = "AKIAHOSTILEPROBE0000"
SECRET = "hostile-probe-secret-value"
TOKEN = "s3-fuzz-admin-token-0b5e"
#: what a call of the origin API may end in (`NotModified` only when it sent validators: none here do)
OUTCOMES = (Original, OriginNotFound, OriginFailure, SourceTooLarge)

#: (method, target) → the raw bytes answered (or parts of them, each sent when the client has taken the last)
Answer = Callable[[str, str], bytes | Iterable[bytes]]


class RawS3(RawServer):
    """Answers every request with `answer(method, target)` (raw bytes), then closes the connection. The
    request's body (a PutObject's, a DeleteObjects') is read first, so that closing never resets it."""

    def __init__(self) -> None:
        super().__init__(_Handler)
        self.answer: Answer = lambda method, target: b""
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[bytes] = []
        #: bytes of answers sent (an answer given in parts stops when the client closes the connection)
        self.sent = 0


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(5.0)
        data = b""
        try:
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = self.request.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target = (lines[0].split(" ") + ["", ""])[:2]
            length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                           if line.lower().startswith("content-length:")), 0)
            if "expect: 100-continue" in (line.lower() for line in lines) and len(body) < length:
                self.request.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")  # a PutObject waits for it
            while len(body) < length:
                chunk = self.request.recv(65536)
                if not chunk:
                    break
                body += chunk
            self.server.requests.append((method, target))
            self.server.bodies.append(body)
            answer = self.server.answer(method, target)
            for part in [answer] if isinstance(answer, bytes) else answer:  # bytes, or parts of them as they go
                self.request.sendall(part)
                self.server.sent += len(part)
        except OSError:
            pass


def http(status: int | str, body: bytes = b"", headers: tuple[tuple[str, str], ...] = (), length: bool = True) -> bytes:
    """An answer; `Connection: close`, as the server does (a connection closed unsaid is another test's)."""
    line = status if isinstance(status, str) else f"HTTP/1.1 {status} Reason"
    head = "".join(f"{name}: {value}\r\n" for name, value in (*headers, ("Connection", "close")))
    if length:
        head += f"Content-Length: {len(body)}\r\n"
    return f"{line}\r\n{head}\r\n".encode("latin-1") + body


def error_xml(code: str, status: int) -> bytes:
    return http(status, f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>as {KEY_ID}</Message></Error>"
                        .encode())


def listing(entries: str, truncated: str = "false", token: str = "") -> bytes:
    next_token = f"<NextContinuationToken>{token}</NextContinuationToken>" if token else ""
    return http(200, f"<?xml version='1.0' encoding='UTF-8'?><ListBucketResult><Name>bkt</Name><IsTruncated>"
                     f"{truncated}</IsTruncated>{next_token}{entries}</ListBucketResult>".encode())


def entry(key: str | None, modified: str | None = "2020-01-01T00:00:00.000Z") -> str:
    return ("<Contents>" + (f"<Key>{key}</Key>" if key is not None else "")
            + (f"<LastModified>{modified}</LastModified>" if modified is not None else "")
            + "<Size>1</Size></Contents>")


LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
          + b"".join(b'<!ENTITY %c "%s">' % (98 + i, b"&%c;" % (97 + i) * 10) for i in range(8))
          + b"]><Error><Code>&i;</Code></Error>")

header_values = st.sampled_from([
    "garbage", "", "-1", "0", "12", "abc", "99999999999999999999", "1e3", "true", "maybe",
    "Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 99 Oct 2015 07:28:00 GMT", "2015-10-21T07:28:00Z", '"etag"',
    '"' + "e" * 5000 + '"', "image/jpeg", "text/html", "bytes 0-1/2", "ongoing-request=\"maybe\"",
    "expiry-date=\"nope\", rule-id=\"x\"", KEY_ID, "1e400", "inf", "nan", "-99999999999", "0x10"])
header_names = st.sampled_from([
    "Last-Modified", "ETag", "Content-Type", "Expires", "x-amz-mp-parts-count", "x-amz-tagging-count",
    "x-amz-missing-meta", "x-amz-object-lock-retain-until-date", "x-amz-delete-marker", "x-amz-restore",
    "x-amz-expiration", "x-amz-server-side-encryption-bucket-key-enabled", "Content-Range", "Accept-Ranges",
    "x-amz-version-id", "Content-Encoding", "x-amz-meta-a"])
statuses = st.sampled_from([200, 200, 200, 204, 206, 301, 304, 307, 400, 403, 404, 409, 412, 416, 500, 501, 503,
                            599, 100, 999])
codes = st.sampled_from(["NoSuchKey", "AccessDenied", "SlowDown", "PermanentRedirect", "InternalError", "NoSuchBucket",
                         "304", "404", "", "A&#10;B", "x" * 5000, KEY_ID, "<b>", "&amp;"])


@st.composite
def object_answers(draw) -> bytes:
    """A raw answer to a GetObject (or any other call): an object with any headers, an error in any shape."""
    kind = draw(st.sampled_from(["object", "object", "error", "odd"]))
    headers = tuple(draw(st.lists(st.tuples(header_names, header_values), max_size=4)))
    if kind == "object":
        body = draw(st.sampled_from([JPEG, JPEG[:1000], b"", b"<Error/>"]))
        framing = draw(st.sampled_from(["right", "right", "short", "long", "none"]))
        if framing == "right":
            return http(draw(statuses), body, headers)
        if framing == "none":
            return http(draw(statuses), body, headers, length=False)
        announced = len(body) - 10 if framing == "short" else len(body) + 1000
        return http(draw(statuses), body, headers + (("Content-Length", str(max(announced, 0))),), length=False)
    if kind == "error":
        return error_xml(draw(codes), draw(statuses))
    return draw(st.sampled_from([
        http(draw(statuses), b"<Error><Code>Oops"), http(draw(statuses), LAUGHS), http(500, b"<html>busy</html>"),
        http(400, b"\xff\xfe not utf-8"), b"HTTP/1.1 200 OK\r\nContent-Le", b"", b"garbage\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        http(200, b"", (("Transfer-Encoding", "chunked"),), length=False) + b"zz\r\n"]))


keys = st.sampled_from(["f/1.jpg", "f/2.png", "f/latest.jpg", "f/9999999999999.jpg", "f/1", "f/a&amp;b.jpg",
                        "f/%2F..%2F1.jpg", "f/\u00fc.jpg", "f/&#1;.jpg", "", "other/5.jpg", "f/" + "9" * 2000])
modified = st.sampled_from(["2020-01-01T00:00:00.000Z", "2020-01-01T00:00:00.000Z", "garbage", "", None,
                            "2020-13-45T99:99:99Z", "99999999999999999999", "1e400", "-1", "0001-01-01T00:00:00Z"])


@st.composite
def listing_answers(draw) -> Answer:
    """A ListObjectsV2 answer (pages, maybe truncated forever), and an object for every GetObject."""
    entries = "".join(entry(draw(st.one_of(st.none(), keys)), draw(modified))
                      for _ in range(draw(st.sampled_from([0, 1, 3]))))
    entries += draw(st.sampled_from(["", "<KeyCount>abc</KeyCount>", "<CommonPrefixes><Prefix>f/x/</Prefix>"
                                     "</CommonPrefixes>", "<EncodingType>url</EncodingType>"]))
    paging = draw(st.sampled_from(["last", "last", "same token", "new token forever", "no token", "garbage flag"]))
    page = draw(st.sampled_from(["listing", "listing", "listing", "error", "odd", "error in a 200"]))
    got = http(200, JPEG, (("Content-Type", "image/jpeg"),)) if draw(st.booleans()) else draw(object_answers())
    other = {"error": error_xml(draw(codes), draw(statuses)), "error in a 200": error_xml(draw(codes), 200)}.get(
        page) or draw(object_answers())
    pages = iter(range(10**9))

    def answer(method: str, target: str) -> bytes:
        if method != "GET" or "list-type=2" not in target:
            return got
        if page != "listing":
            return other
        if paging == "last":
            return listing(entries)
        if paging == "garbage flag":
            return listing(entries, truncated="maybe")
        token = {"same token": "t", "new token forever": f"t{next(pages)}", "no token": ""}[paging]
        return listing(entries, truncated="true", token=token)

    return answer


def origin_table(url: str, **keys) -> ConfigTable:
    data = {"bucket": "bkt", "endpoint_url": url, "access_key_id": KEY_ID, "secret_access_key": SECRET, **keys}
    return ConfigTable(data, file="fuzz.toml", table="origins[0]", base_dir=Path("."))


async def failed_fetch(raw_s3, answer: bytes) -> OriginFailure:
    """What a GetObject of `a.jpg` fails with, within `BOUND`, from a store answering `answer` to every request."""
    origin = S3Origin.from_config(OriginSettings("store", "s3", timeout=TIMEOUT), origin_table(raw_s3.url))
    await origin.open()
    raw_s3.answer = lambda method, target: answer
    try:
        with pytest.raises(OriginFailure) as failure:
            await asyncio.wait_for(origin.fetch(OriginRequest("a.jpg", 10**6)), BOUND)
    finally:
        await origin.close()
    return failure.value


@pytest.fixture(scope="module")
def raw_s3():
    with RawS3().serving() as server:
        yield server


def test_random_answers_end_in_the_origin_api_s_outcomes_in_time(raw_s3):
    """Each call the node makes of an S3-backed origin, against random answers: an original, not found,
    not modified, too large or an `OriginFailure`, nothing else (a `ValueError` of botocore's reading a
    `Last-Modified` that is not a date had escaped: a 500 of a request the shared tier read for), and
    within its time (the caller's timeout bounds a listing truncated forever)."""
    loop = asyncio.new_event_loop()
    s3 = S3Origin.from_config(OriginSettings("store", "s3", timeout=TIMEOUT), origin_table(raw_s3.url))
    backup = CloudinaryBackupOrigin.from_config(OriginSettings("backup", "cloudinary_backup", timeout=TIMEOUT),
                                                origin_table(raw_s3.url, resolution_ttl="0s"))
    loop.run_until_complete(s3.open())
    loop.run_until_complete(backup.open())
    calls = {
        "GetObject": lambda: s3.fetch(OriginRequest("a.jpg", 10**6)),
        "cloudinary": lambda: backup.fetch(OriginRequest("image/upload/v1/f.jpg", 10**6)),
        "list_objects": lambda: s3.list_objects("f/", pages=3),
        "delete_prefix": lambda: s3.delete_prefix("f/"),
        "PutObject": lambda: s3.put_object("f/x", b"x", "application/octet-stream"),
    }
    ended: dict[str, set[str]] = {name: set() for name in calls}

    async def bounded(call) -> object:
        started = time.monotonic()
        try:
            return await asyncio.wait_for(call(), TIMEOUT)  # the chain's, the shared tier's timeout
        except TimeoutError:
            return TimeoutError()
        except Exception as error:  # noqa: BLE001 - what it is, is the assertion
            return error
        finally:
            assert time.monotonic() - started < BOUND

    try:
        # each call its share of the examples: drawn as one more input, a call had none in one CI run
        answers = st.one_of(object_answers().map(lambda raw: lambda method, target: raw), listing_answers())
        for called in sorted(calls):
            @fuzz_settings(EXAMPLES // len(calls))
            @given(answer=answers, name=st.just(called))
            def one(answer, name):
                raw_s3.answer = answer
                outcome = loop.run_until_complete(bounded(calls[name]))
                # (the results of the calls that are not fetches: keys deleted, keys listed, nothing)
                assert isinstance(outcome, (*OUTCOMES, TimeoutError, int, list, type(None))), (
                    name, repr(outcome)[:500])
                if isinstance(outcome, Exception):  # no secret, and only so much of what the store said (a
                    # 5000-character error code was quoted whole, and the shared tier logs its failures whole)
                    assert SECRET not in str(outcome) and len(str(outcome)) < 500, (name, repr(outcome)[:500])
                ended[name].add(type(outcome).__name__)

            one()
    finally:
        loop.run_until_complete(s3.close())
        loop.run_until_complete(backup.close())
        loop.close()
    assert all(ended.values()), ended


@pytest.mark.parametrize("deleted", ["an error", "errors in a 200"])
def test_a_listed_key_of_any_length_is_quoted_short(raw_s3, deleted):
    """A listing holding a key of 2000 characters, then DeleteObjects failing on it: the failure quoted the
    key whole (2034 characters, found by the test above), and an error code of any length in a 200's
    `<Error>`; the shared tier and the purge journal log their failures whole."""
    key = "f/" + "9" * 2000
    failed = error_xml("InternalError", 500) if deleted == "an error" else http(200, (
        f"<?xml version='1.0'?><DeleteResult><Error><Key>{key}</Key><Code>{'Slow' * 1000}</Code>"
        "</Error></DeleteResult>").encode())
    raw_s3.answer = lambda method, target: listing(entry(key)) if method == "GET" else failed
    loop = asyncio.new_event_loop()
    s3 = S3Origin.from_config(OriginSettings("store", "s3", timeout=TIMEOUT), origin_table(raw_s3.url))
    loop.run_until_complete(s3.open())
    try:
        with pytest.raises(OriginFailure) as raised:
            loop.run_until_complete(s3.delete_prefix("f/"))
    finally:
        loop.run_until_complete(s3.close())
        loop.close()
    message = str(raised.value)
    assert message.startswith(f"DeleteObjects '{key[:200]}…': ") and len(message) < 300
    assert message.endswith("InternalError (HTTP 500)" if deleted == "an error" else ": error")


def test_a_key_of_exactly_the_quoted_length_is_quoted_whole():
    assert quoted_key("k" * QUOTED_KEY_CHARS) == repr("k" * QUOTED_KEY_CHARS)
    assert quoted_key("k" * (QUOTED_KEY_CHARS + 1)) == repr("k" * QUOTED_KEY_CHARS + "\u2026")


def shared_store(objects: bytes, listings: bytes) -> Answer:
    """A shared tier's store: `objects` to every GetObject, `listings` to every ListObjectsV2, every write
    taken."""
    def answer(method: str, target: str) -> bytes:
        if method == "GET":
            return listings if "list-type=2" in target else objects
        if method == "PUT":
            return http(200, b"", (("ETag", '"9b2cf535f27731c974343645a3985328"'),))
        return http(200, b"<?xml version='1.0'?><DeleteResult/>" if method == "POST" else b"")
    return answer


EMPTY_LISTING = listing("")
NO_SUCH_KEY = error_xml("NoSuchKey", 404)


@pytest.mark.parametrize("objects, listings", [
    (http(200, b"x", (("Last-Modified", "not a date"),)), EMPTY_LISTING),
    (http(200, b"x", (("x-amz-mp-parts-count", "abc"),)), EMPTY_LISTING),
    (http(200, b"x", (("x-amz-object-lock-retain-until-date", "never"),)), EMPTY_LISTING),
    (NO_SUCH_KEY, listing(entry("outputs/_purges/x", None))),
    (NO_SUCH_KEY, listing(entry("outputs/_purges/x", "not a date"))),
    (NO_SUCH_KEY, listing(entry(None))),
    (http(200, b"x", (("Last-Modified", "99999999999999999999"),)), EMPTY_LISTING),
    (NO_SUCH_KEY, listing(entry("outputs/_purges/x", "99999999999999999999"))),
], ids=["last-modified", "parts-count", "lock-date", "listed-without-date", "listed-date", "listed-without-key",
        "last-modified-out-of-range", "listed-date-out-of-range"])
async def test_a_shared_store_answering_what_botocore_cannot_read_is_a_miss_and_a_purge_says_so(
        node_factory, raw_s3, tmp_path, objects, listings):
    """botocore raised `ValueError` (a date or a number that is not one) or the listing's reader `KeyError`
    through the `s3` origin under the shared tier, which expects `OriginFailure`: an image the local origin
    has was a 500, and so was a purge."""
    raw_s3.answer = shared_store(objects, listings)
    node = await node_factory(write_config(tmp_path, local_config(
        before=f'[admin]\ntoken = "{TOKEN}"\n', after=shared_cache_table(raw_s3.url, "bkt", timeout=f"{TIMEOUT}s"))))
    response = await node.fetch("/tr:w-100/astronaut.jpg")
    assert response.code == 200, response.body[:200]
    assert decoded(response.body).width == 100
    purged = await node.fetch("/_edge/purge", method="POST", body=json.dumps({"url": "/astronaut.jpg"}).encode(),
                              headers={"Authorization": f"Bearer {TOKEN}"})
    assert purged.code in (200, 502), purged.body[:200]
    shared = json.loads(purged.body)["shared"]
    assert purged.code == 200 or shared.get("error") == "bad_response", shared
    assert (await node.fetch("/tr:w-90/astronaut.jpg")).code == 200  # none the worse


async def test_a_key_longer_than_s3_takes_is_not_found_without_asking(raw_s3):
    """S3 refuses a key over 1024 bytes of UTF-8 (`KeyTooLongError`, a 400, which would be the origin's failure):
    no object can have it, so it is not found, and no request is made (a mutation letting such keys through
    survived: moto, the tests' S3, answers them 404)."""
    origin = S3Origin.from_config(OriginSettings("store", "s3", timeout=TIMEOUT), origin_table(raw_s3.url))
    await origin.open()
    raw_s3.answer = lambda method, target: error_xml("KeyTooLongError", 400)
    asked = len(raw_s3.requests)
    try:
        with pytest.raises(OriginNotFound):
            await asyncio.wait_for(origin.fetch(OriginRequest("\u00e9" * 513, 10**6)), BOUND)  # 1026 bytes
        assert len(raw_s3.requests) == asked
        with pytest.raises(OriginFailure):  # 1024 bytes: the store's to answer
            await asyncio.wait_for(origin.fetch(OriginRequest("\u00e9" * 512, 10**6)), BOUND)
        assert len(raw_s3.requests) > asked
    finally:
        await origin.close()


async def test_a_public_id_whose_folder_alone_is_as_long_as_s3_takes_is_not_found_without_listing(raw_s3):
    """Every version's key is longer than its folder: a `cloudinary_backup` folder of 1024 bytes has no version S3
    could hold, so it is not found and nothing is listed; one byte shorter, the listing is the store's to answer."""
    backup = CloudinaryBackupOrigin.from_config(OriginSettings("backup", "cloudinary_backup", timeout=TIMEOUT),
                                                origin_table(raw_s3.url))
    await backup.open()
    raw_s3.answer = lambda method, target: error_xml("KeyTooLongError", 400)
    public_id = "image/upload/" + "a" * (1024 - len(backup.key_for("image/upload/") + "/"))
    assert len((backup.key_for(public_id) + "/").encode()) == 1024
    asked = len(raw_s3.requests)
    try:
        with pytest.raises(OriginNotFound):
            await asyncio.wait_for(backup.fetch(OriginRequest(public_id + ".jpg", 10**6)), BOUND)
        assert len(raw_s3.requests) == asked
        with pytest.raises(OriginFailure):
            await asyncio.wait_for(backup.fetch(OriginRequest(public_id[:-1] + ".jpg", 10**6)), BOUND)
        assert len(raw_s3.requests) > asked
    finally:
        await backup.close()


@pytest.mark.parametrize("code, quoted", [
    ("SlowDown", "SlowDown"), ("x" * 5000, "unexpected code"), ("A&#10;B", "unexpected code"),
    ("&lt;b&gt;", "unexpected code"), ("", "error")])
async def test_an_error_code_that_is_not_one_is_not_quoted(raw_s3, code, quoted):
    """The code of an error answer was quoted in the failure whatever it was: 5000 characters, a line
    break, any text of the store's (the shared tier logs its failures whole)."""
    failure = await failed_fetch(raw_s3, error_xml(code, 503))
    assert (failure.kind, str(failure)) == ("server_error", f"GetObject 'a.jpg': {quoted} (HTTP 503)")


@pytest.mark.parametrize("answer, kind, said", [
    (http(403), "denied", "403 (HTTP 403)"), (error_xml("Forbidden", 403), "denied", "Forbidden (HTTP 403)"),
    (http(500), "server_error", "500 (HTTP 500)"), (error_xml("Oops", 500), "server_error", "Oops (HTTP 500)"),
    (error_xml("Oops", 400), "error", "Oops (HTTP 400)")],
    ids=["bare-403", "403-unknown-code", "bare-500", "500-unknown-code", "400-unknown-code"])
async def test_an_error_s3_does_not_name_is_classified_by_its_status(raw_s3, answer, kind, said):
    """A store's 403 is a refusal and its 500 a server error whatever code it gives (none, or one S3 never
    sends): the status decides where the code says nothing."""
    failure = await failed_fetch(raw_s3, answer)
    assert (failure.kind, str(failure)) == (kind, f"GetObject 'a.jpg': {said}")


@pytest.mark.parametrize("answer", [b"", b"HTTP/1.1 200 OK\r\nContent-Le", b"HTTP/1.1 100 Continue\r\n\r\n"],
                         ids=["nothing", "mid-headers", "only-100"])
async def test_a_connection_closed_before_the_answer_is_a_bad_response(raw_s3, answer):
    """botocore's ConnectionClosedError is an HTTPClientError, and was caught as one first: `error`, not
    the `bad_response` the classification names for it (and a `web` origin reports)."""
    failure = await failed_fetch(raw_s3, answer)
    assert failure.kind == "bad_response", failure


def endless(head: bytes, part: bytes, megabytes: int = 300) -> Iterator[bytes]:
    """`head`, then `part` (1 MB) over and over, up to `megabytes`."""
    yield head
    for _ in range(megabytes):
        yield part


MEGABYTE = b"y" * 2**20
JUNK_TAGS = http(200, b"<ListBucketResult>" + b"<a/>" * 1_500_000 + b"</ListBucketResult>")


ERROR_ANNOUNCING_300_MB = b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n<Error>" % (300 * 2**20 + 7)
ERROR_UNANNOUNCED = b"HTTP/1.1 503 Oops\r\nConnection: close\r\n\r\n<Error>"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
LISTING_CHUNK = b"%x\r\n" % 2**20 + b"<Contents><Key>f/a</Key></Contents>".ljust(2**20) + b"\r\n"


@pytest.mark.parametrize("call, answer", [
    ("GetObject", lambda: endless(ERROR_ANNOUNCING_300_MB, MEGABYTE)),
    ("GetObject", lambda: endless(ERROR_UNANNOUNCED, MEGABYTE)),
    ("list_objects", lambda: endless(ERROR_ANNOUNCING_300_MB, MEGABYTE)),
    ("list_objects", lambda: endless(ERROR_UNANNOUNCED, MEGABYTE)),
    ("list_objects", lambda: endless(CHUNKED, LISTING_CHUNK)),
    ("list_objects", lambda: JUNK_TAGS),
], ids=["error-300MB", "error-unannounced", "list-error-300MB", "list-error-unannounced", "list-chunked",
        "list-6MB-of-tags"])
async def test_an_answer_read_whole_is_bounded(raw_s3, call, answer):
    """aiobotocore reads an error's body, and a listing, whole before botocore looks at it: a store's 300 MB
    error body was read, and copied, past 1 GB, outside the fetch memory budget, and a 44 MB listing held
    the event loop for 25 s in botocore's parser (past every timeout: a parse is not cancelled). Now an
    answer read whole stops past 8 MB, and one of more tags than S3 sends is not parsed."""
    origin = S3Origin.from_config(OriginSettings("store", "s3", timeout=TIMEOUT), origin_table(raw_s3.url))
    await origin.open()
    raw_s3.answer = lambda method, target: answer()
    raw_s3.sent = 0
    started = time.monotonic()
    try:
        with pytest.raises(OriginFailure) as failure:
            called = origin.fetch(OriginRequest("a.jpg", 10**6)) if call == "GetObject" else origin.list_objects("f/")
            await asyncio.wait_for(called, BOUND)
    finally:
        await origin.close()
    assert failure.value.kind == "bad_response", failure.value
    assert "an answer of more than" in str(failure.value)
    assert time.monotonic() - started < TIMEOUT
    assert raw_s3.sent < 32 * 2**20  # read up to the limit, and the socket's buffers


async def test_an_object_announced_over_the_limit_is_refused_before_its_body_is_read(raw_s3):
    """A `Content-Length` of 300 MB against a limit of 100 MB: too large from its headers, none of its body read
    (but what the socket's buffers took), where a read to the limit had taken 100 MB from the store first."""
    origin = S3Origin.from_config(OriginSettings("store", "s3", timeout=TIMEOUT), origin_table(raw_s3.url))
    await origin.open()
    raw_s3.answer = lambda method, target: endless(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (300 * 2**20),
                                                   MEGABYTE)
    raw_s3.sent = 0
    try:
        with pytest.raises(SourceTooLarge):
            await asyncio.wait_for(origin.fetch(OriginRequest("a.jpg", 100 * 2**20)), BOUND)
    finally:
        await origin.close()
    assert raw_s3.sent < 32 * 2**20


async def test_a_listing_page_as_large_as_s3_s_largest_is_read(raw_s3):
    """1000 keys of 1024 bytes of UTF-8, percent-encoded (`encoding-type=url`), with every field S3 sends:
    within both bounds."""
    key = "f/" + "%E2%82%AC" * 340  # €: 3 bytes, 9 characters encoded
    entries = "".join(
        f"<Contents><Key>{key}{index:04d}</Key><LastModified>2020-01-01T00:00:00.000Z</LastModified>"
        f"<ETag>&quot;{index:032x}&quot;</ETag><ChecksumAlgorithm>CRC32</ChecksumAlgorithm>"
        f"<ChecksumType>FULL_OBJECT</ChecksumType><Size>1234</Size><Owner><ID>{'0' * 64}</ID>"
        f"<DisplayName>owner</DisplayName></Owner><StorageClass>STANDARD</StorageClass></Contents>"
        for index in range(1000))
    page = listing(entries + "<EncodingType>url</EncodingType><MaxKeys>1000</MaxKeys><KeyCount>1000</KeyCount>")
    assert len(page) > 3 * 10**6
    origin = S3Origin.from_config(OriginSettings("store", "s3", timeout=TIMEOUT), origin_table(raw_s3.url))
    await origin.open()
    raw_s3.answer = lambda method, target: page
    try:
        listed = await asyncio.wait_for(origin.list_objects("f/"), BOUND)
    finally:
        await origin.close()
    assert len(listed) == 1000 and listed[0][0] == "f/" + "\u20ac" * 340 + "0000"


async def test_keys_a_store_lists_outside_the_prefix_are_neither_deleted_nor_served(raw_s3):
    """A store that ignores `Prefix` (broken, or not S3) lists the bucket: a purge of the shared tier
    deleted every key listed, the purge journal's housekeeping every old one (outside the tier's folder
    too: it may share a bucket), and a `cloudinary_backup` folder `f/` took `g/7.jpg` for its version 7,
    another asset's image served and cached in its place."""
    listed = ("outputs/a/1", "outputs/b/2", "originals/a/3", "image/upload/g/7.jpg")
    bucket = listing("".join(entry(key) for key in listed))
    s3 = S3Origin.from_config(OriginSettings("store", "s3", timeout=TIMEOUT), origin_table(raw_s3.url))
    backup = CloudinaryBackupOrigin.from_config(OriginSettings("backup", "cloudinary_backup", timeout=TIMEOUT),
                                                origin_table(raw_s3.url))
    await s3.open()
    await backup.open()
    raw_s3.answer = lambda method, target: bucket if method == "GET" else http(200, b"<DeleteResult/>")
    try:
        raw_s3.bodies.clear()
        assert await asyncio.wait_for(s3.delete_prefix("outputs/a/"), BOUND) == 1
        deleted = [body for body in raw_s3.bodies if body.startswith(b"<Delete")]
        assert len(deleted) == 1 and b"<Key>outputs/a/1</Key>" in deleted[0] and deleted[0].count(b"<Key>") == 1
        assert [key for key, _ in await asyncio.wait_for(s3.list_objects("outputs/"), BOUND)] == \
            ["outputs/a/1", "outputs/b/2"]
        raw_s3.requests.clear()
        with pytest.raises(OriginNotFound):
            await asyncio.wait_for(backup.fetch(OriginRequest("image/upload/f.jpg", 10**6)), BOUND)
        assert [method for method, _ in raw_s3.requests] == ["GET"]  # the listing, and no GetObject
    finally:
        await s3.close()
        await backup.close()


async def test_a_store_that_ignores_delimiter_has_a_file_s_outputs_purged_and_not_its_folder_s(raw_s3):
    """The shared tier keeps a path's outputs as `<path>/<hash>`: a purge of the file `a` deletes those directly
    under `a/` (listed with `Delimiter`), a purge of the folder `a/` those deeper. A store that ignores the
    delimiter lists both: each purge takes its own keys from the listing, and leaves the other's."""
    bucket = listing("".join(entry(key) for key in ("p/1", "p/2", "p/sub/3")))
    s3 = S3Origin.from_config(OriginSettings("store", "s3", timeout=TIMEOUT), origin_table(raw_s3.url))
    await s3.open()
    raw_s3.answer = lambda method, target: bucket if method == "GET" else http(200, b"<DeleteResult/>")
    try:
        for direct, own in ((True, [b"p/1", b"p/2"]), (False, [b"p/sub/3"])):
            raw_s3.bodies.clear()
            assert await asyncio.wait_for(s3.delete_prefix("p/", direct), BOUND) == len(own)
            [deleted] = [body for body in raw_s3.bodies if body.startswith(b"<Delete")]
            assert re.findall(rb"<Key>(.*?)</Key>", deleted) == own, direct
    finally:
        await s3.close()


async def test_a_store_that_ignores_delimiter_serves_no_deeper_key_as_a_version(raw_s3):
    """A store that ignores `Delimiter` lists `banners/` with the keys of deeper folders: the name before the
    first dot of `2024.summer/hero/1690000000.jpg` was taken for version 2024 of `banners`, hero's image
    served and cached for a year under `banners.jpg`."""
    deeper = listing(entry("image/upload/banners/2024.summer/hero/1690000000.jpg"))
    backup = CloudinaryBackupOrigin.from_config(OriginSettings("backup", "cloudinary_backup", timeout=TIMEOUT),
                                                origin_table(raw_s3.url))
    await backup.open()
    raw_s3.answer = lambda method, target: deeper
    raw_s3.requests.clear()
    try:
        with pytest.raises(OriginNotFound):
            await asyncio.wait_for(backup.fetch(OriginRequest("image/upload/banners.jpg", 10**6)), BOUND)
        assert [method for method, _ in raw_s3.requests] == ["GET"]  # the listing, and no GetObject
    finally:
        await backup.close()


@pytest.mark.parametrize("token, reason", [("same", "truncated without a new token"),
                                           (None, "more than 10 pages")])
async def test_a_listing_that_would_not_end_is_a_bad_response_within_ten_pages(raw_s3, token, reason):
    """A store answering `IsTruncated` with the token it was asked with (or a new one each time) cost 100 pages
    a public ID (~8 s), kept every key they listed (110 MB) and then served the newest of what it had read."""
    pages = iter(range(1000))
    keys = "".join(entry(f"image/upload/f/{n:04}.jpg") for n in range(1000))
    backup = CloudinaryBackupOrigin.from_config(OriginSettings("backup", "cloudinary_backup", timeout=TIMEOUT),
                                                origin_table(raw_s3.url))
    await backup.open()
    raw_s3.answer = lambda method, target: listing(keys, "true", token or f"t{next(pages)}")
    raw_s3.requests.clear()
    try:
        with pytest.raises(OriginFailure, match=reason) as failure:
            await asyncio.wait_for(backup.fetch(OriginRequest("image/upload/f.jpg", 10**6)), BOUND)
        assert failure.value.kind == "bad_response"
        assert len(raw_s3.requests) == (2 if token else 10)
    finally:
        await backup.close()


async def test_a_connection_the_store_closed_after_its_answer_fails_no_delete(raw_s3):
    """A store that closes each connection after answering without saying so (`Connection: close`): aiohttp
    sends a GET or a PUT again on a fresh connection when the pooled one turns out closed, never a POST,
    and every other DeleteObjects (a purge of the shared tier) failed, `bad_response` or `refused`."""
    origin = S3Origin.from_config(OriginSettings("store", "s3", timeout=TIMEOUT), origin_table(raw_s3.url))
    await origin.open()
    raw_s3.answer = lambda method, target: (b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n<DeleteResult/>"
                                            if method == "POST" else listing(entry("f/1")))
    try:
        for number in range(20):  # (a race: one in two was lost, so 40 calls show it)
            await asyncio.wait_for(origin.delete_keys([f"f/{number}"]), BOUND)
            assert await asyncio.wait_for(origin.delete_prefix("f/"), BOUND) == 1
    finally:
        await origin.close()


def s3_node_config(url: str, type_: str = "s3", extra: str = "") -> str:
    return f"""
[[origins]]
name = "store"
type = "{type_}"
bucket = "bkt"
region = "us-east-1"
endpoint_url = "{url}"
access_key_id = "{KEY_ID}"
secret_access_key = "{SECRET}"
timeout = "{TIMEOUT}s"
{extra}
[[endpoints]]
id = ""
origins = ["store"]
"""


#: an error document a store may send with its 304, which HTTP says has none (aiohttp refuses it: the fleet
#: probe's moto did so, counted `error`)
XML_BODY = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NotModified</Code></Error>"


@pytest.mark.parametrize("type_", ["s3", "cloudinary_backup"])
@pytest.mark.parametrize("body", [b"", XML_BODY])
async def test_a_304_to_a_fetch_that_sent_no_validators_is_a_bad_response(node_factory, raw_s3, tmp_path, type_,
                                                                            body):
    """Any 304 was `NotModified`, which the originals tier takes only for an answer to its conditional fetch
    (it asserts it holds the original): a store answering 304 to the first fetch of a path was a 500. A `web`
    origin takes a 304 only when it sent validators, as now the S3-backed ones."""
    def answer(method: str, target: str) -> bytes:
        if "list-type=2" in target:
            return listing(entry("image/upload/f/1.jpg"))
        length = b"Content-Length: %d\r\n" % len(body) if body else b""
        return b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n%s\r\n%s" % (length, body)

    raw_s3.answer = answer
    node = await node_factory(write_config(tmp_path, s3_node_config(raw_s3.url, type_)))
    response = await node.fetch("/tr:w-100/image/upload/f.jpg")
    assert (response.code, response.headers.get("X-Edge-Error")) == (502, "store: bad_response"), response.body


RENDER_TIMEOUT = 2.0
#: a request's answer: the fetch (a listing and a GetObject within one timeout), a render, a busy machine
NODE_BOUND = TIMEOUT + RENDER_TIMEOUT + 10
STATUSES = {200, 400, 404, 422, 502, 503, 504}


@pytest.fixture(scope="module")
def fuzzed_node(raw_s3, tmp_path_factory):
    """`edge serve` (one worker, in a child process) with an `s3` origin on the default endpoint and a
    `cloudinary_backup` one (listing on every fetch) on `/cl/`, both at the raw server."""
    folder = tmp_path_factory.mktemp("s3-fuzz-node")
    config = write_config(folder, f"""
[server]
access_log = false
[limits]
render_timeout = "{RENDER_TIMEOUT}s"
""" + s3_node_config(raw_s3.url) + f"""
[[origins]]
name = "backup"
type = "cloudinary_backup"
bucket = "bkt"
region = "us-east-1"
endpoint_url = "{raw_s3.url}"
access_key_id = "{KEY_ID}"
secret_access_key = "{SECRET}"
timeout = "{TIMEOUT}s"
resolution_ttl = "0s"
[[endpoints]]
id = "cl"
origins = ["backup"]
""")
    node = NodeProcess(config, "--workers", "1")
    try:
        yield urlsplit(node.url), node
    finally:
        node.stop()


def test_random_store_answers_get_a_bounded_answer_and_never_a_500(raw_s3, fuzzed_node):
    """Through a running node: every answer an image at the width asked for, or 404/502/503/504, within the
    bound; no secret in the node's log; and a good object afterwards renders."""
    address, node = fuzzed_node
    numbers = itertools.count()
    answered = []

    @fuzz_settings(EXAMPLES)
    @given(answer=st.one_of(object_answers().map(lambda raw: lambda method, target: raw), listing_answers()),
           endpoint=st.sampled_from(["", "/cl"]))
    def one(answer, endpoint):
        raw_s3.answer = answer
        number = next(numbers)
        width = 100 + number % 50
        path = f"{endpoint}/tr:w-{width}/f/{number}.jpg" if endpoint else f"/tr:w-{width}/f-{number}.jpg"
        status, body, seconds = exchange(address, "GET", path, timeout=NODE_BOUND)
        assert status in STATUSES and seconds < NODE_BOUND, (path, status, body[:200])
        if status == 200:
            assert decoded(body).width == width, path
        answered.append(status)

    one()
    assert answered.count(502) >= EXAMPLES // 10, sorted(answered)
    raw_s3.answer = lambda method, target: (listing(entry("f/7.jpg")) if "list-type=2" in target
                                            else http(200, JPEG, (("Content-Type", "image/jpeg"),)))
    for path in ("/tr:w-120/good.jpg", "/cl/tr:w-121/f.jpg"):  # the node is none the worse
        status, body, _ = exchange(address, "GET", path, timeout=NODE_BOUND)
        assert status == 200, (path, status, body[:200])
        assert decoded(body).width in (120, 121)
    log = "".join(node.log)
    assert SECRET not in log and KEY_ID not in log and "Traceback" not in log, log[-3000:]


def test_random_shared_store_answers_never_fail_an_image_or_a_purge(raw_s3, tmp_path):
    """The fleet's shared tier at the raw server (a `local` origin has the images): whatever the store
    answers to its reads, writes, listings and deletes, every image is served, at its width, and a purge
    answers 200 or 502 (the store named as failed), never a 500; the node's log holds no secret."""
    config = write_config(tmp_path, local_config(
        before=f'[server]\naccess_log = false\n[admin]\ntoken = "{TOKEN}"\n',
        after=shared_cache_table(raw_s3.url, "bkt", timeout=f"{TIMEOUT}s")))
    node = NodeProcess(config, "--workers", "1")
    address = urlsplit(node.url)
    widths = itertools.count(100)
    purges = []
    try:
        @fuzz_settings(EXAMPLES // 2)
        @given(answer=st.one_of(object_answers().map(lambda raw: lambda method, target: raw), listing_answers()),
               purge=st.booleans())
        def one(answer, purge):
            raw_s3.answer = answer
            width = next(widths)
            status, body, seconds = exchange(address, "GET", f"/tr:w-{width}/astronaut.jpg", timeout=NODE_BOUND)
            assert status == 200 and seconds < NODE_BOUND, (status, body[:200])
            assert decoded(body).width == width
            if purge:  # (the tier's own timeout bounds a listing truncated forever: 10 of them)
                status, body, seconds = exchange(
                    address, "POST", "/_edge/purge", body=json.dumps({"prefix": "/astr"}).encode(),
                    headers={"Authorization": f"Bearer {TOKEN}"}, timeout=TIMEOUT * 10 + NODE_BOUND)
                assert status in (200, 502) and seconds < TIMEOUT * 10 + NODE_BOUND, (status, body[:300])
                purges.append(json.loads(body)["shared"])

        one()
    finally:
        node.stop()
    assert purges, "no purge drawn"
    log = "".join(node.log)
    assert SECRET not in log and "Traceback" not in log, log[-3000:]


@pytest.mark.parametrize("answer", [http(404), error_xml("NoSuchKey", 404), error_xml("NotFound", 404)],
                         ids=["bare", "NoSuchKey", "NotFound"])
async def test_a_404_to_a_listing_or_a_write_is_a_failure_not_a_missing_key(raw_s3, answer):
    """Only a GetObject's 404 is a key that is not there. To a listing or a write it is a bucket that is not
    (a store's bare 404): `OriginNotFound` had escaped the shared tier's writes (an exception never
    retrieved), its purges (a 500) and its journal, and made a `cloudinary_backup` origin's paths 404s."""
    s3 = S3Origin.from_config(OriginSettings("store", "s3", timeout=TIMEOUT), origin_table(raw_s3.url))
    backup = CloudinaryBackupOrigin.from_config(OriginSettings("backup", "cloudinary_backup", timeout=TIMEOUT),
                                                origin_table(raw_s3.url))
    await s3.open()
    await backup.open()
    raw_s3.answer = lambda method, target: answer
    try:
        with pytest.raises(OriginNotFound):
            await asyncio.wait_for(s3.fetch(OriginRequest("a.jpg", 10**6)), BOUND)
        for call in (lambda: s3.put_object("f/x", b"x", "image/jpeg"), lambda: s3.list_objects("f/"),
                     lambda: s3.delete_prefix("f/"), lambda: backup.fetch(OriginRequest("f.jpg", 10**6))):
            with pytest.raises(OriginFailure) as failure:
                await asyncio.wait_for(call(), BOUND)
            assert failure.value.kind == "error", failure.value
    finally:
        await s3.close()
        await backup.close()


async def test_objects_whose_headers_do_not_parse_leave_no_connection_taken(raw_s3):
    """botocore reads an object's headers, then fails on one (a `Last-Modified` that is not a date) before
    handing the body over: nobody closed it, and its connection stayed taken. After 64 such answers (the
    origin's pool) every fetch of the origin waited for a connection until its timeout, for good."""
    origin = S3Origin.from_config(OriginSettings("store", "s3", timeout=TIMEOUT), origin_table(raw_s3.url))
    await origin.open()
    body = JPEG * (3 * 2**20 // len(JPEG))  # more than the socket's buffers: the connection waits for a reader
    raw_s3.answer = lambda method, target: (b"HTTP/1.1 200 OK\r\nLast-Modified: not a date\r\nContent-Length: %d\r\n"
                                            b"\r\n%s" % (len(body), body))
    try:
        for _ in range(80):
            with pytest.raises(OriginFailure):
                await asyncio.wait_for(origin.fetch(OriginRequest("a.jpg", 10**7)), TIMEOUT)
        raw_s3.answer = lambda method, target: http(200, JPEG)
        assert (await asyncio.wait_for(origin.fetch(OriginRequest("a.jpg", 10**7)), TIMEOUT)).body == JPEG
    finally:
        await origin.close()


@pytest.mark.parametrize("location, named", [
    ("http://169.254.169.254/latest/meta-data/", "http://169.254.169.254"),
    ("http://user:pw@10.0.0.1:8080/x", "http://10.0.0.1:8080"),
    ("/elsewhere", "STORE"), ("http://[::1/", "an address that does not parse"), ("", "STORE")])
async def test_a_refused_redirect_names_where_it_led(raw_s3, location, named):
    """The failure (logged) named the store's own address, not the redirect's target."""
    failure = await failed_fetch(raw_s3, http(307, b"", (("Location", location),)))
    assert failure.kind == "redirect_refused"
    assert str(failure) == f"GetObject 'a.jpg': redirect to {named.replace('STORE', raw_s3.url)} refused"


async def test_a_redirect_by_a_uri_header_alone_is_refused_too(raw_s3):
    """aiohttp follows `URI` where there is no `Location`: such an answer is a redirect like any other."""
    failure = await failed_fetch(raw_s3, http(307, b"", (("URI", "http://169.254.169.254/latest/meta-data/"),)))
    assert failure.kind == "redirect_refused", failure


@pytest.mark.parametrize("status", [301, 302, 307])
async def test_a_redirect_naming_no_region_is_probed_once_not_to_the_recursion_limit(raw_s3, status):
    """botocore asks the region of a bucket whose store answered a 3xx naming none (HeadBucket), and asked it again
    for the HeadBucket's own 3xx: ~100 nested requests per call, ended by a RecursionError wherever it landed (inside
    asyncio's making of a transport, its socket was left open until garbage collection: the fuzz test above drew it).
    A call and one probe, each call an `OriginFailure`."""
    s3 = S3Origin.from_config(OriginSettings("store", "s3", timeout=TIMEOUT), origin_table(raw_s3.url))
    backup = CloudinaryBackupOrigin.from_config(OriginSettings("backup", "cloudinary_backup", timeout=TIMEOUT),
                                                origin_table(raw_s3.url))
    await s3.open()
    await backup.open()
    raw_s3.answer = lambda method, target: http(status, b"", (("Expires", "-1"),))
    try:
        for call in (lambda: s3.fetch(OriginRequest("a.jpg", 10**6)), lambda: s3.put_object("f/x", b"x", "image/jpeg"),
                     lambda: s3.list_objects("f/"), lambda: s3.delete_keys(["f/x"]),
                     lambda: backup.fetch(OriginRequest("f.jpg", 10**6))):
            raw_s3.requests.clear()
            with pytest.raises(OriginFailure) as failure:
                await asyncio.wait_for(call(), BOUND)
            assert failure.value.kind == "error" and f"(HTTP {status})" in str(failure.value), failure.value
            assert [method for method, _ in raw_s3.requests][1:] == ["HEAD"], raw_s3.requests[:5]
    finally:
        await s3.close()
        await backup.close()


@pytest.mark.parametrize("status, code, headers", [
    (301, "PermanentRedirect", (("x-amz-bucket-region", "eu-west-1"),)),  # AWS's, without a Location
    (400, "AuthorizationHeaderMalformed", ()),  # its Region in the body
])
async def test_a_bucket_in_another_region_is_told_with_the_region_to_set(raw_s3, status, code, headers):
    """AWS's 301 to a bucket asked in the wrong region has no `Location`: it had been told as a redirect refused to
    the store's own address, and nothing named `region` (unlucky-operator probe)."""
    error = (f"<Error><Code>{code}</Code><Message>wrong region</Message><Region>eu-west-1</Region>"
             f"<Endpoint>bkt.s3.eu-west-1.amazonaws.com</Endpoint></Error>").encode()
    failure = await failed_fetch(raw_s3, http(status, error, (("Content-Type", "application/xml"), *headers)))
    assert (failure.kind, str(failure)) == (
        "error", f"GetObject 'a.jpg': {code} (HTTP {status}): the bucket is in region eu-west-1: set "
                 f'`region = "eu-west-1"`')


@pytest.mark.parametrize("region", ["x" * 300, "eu-west-1</b><script>", "EU WEST 1"])
async def test_a_region_that_does_not_look_like_one_is_not_quoted(raw_s3, region):
    """The region of a wrong-region answer is the store's text: quoted only when it is a region's name."""
    error = f"<Error><Code>AuthorizationHeaderMalformed</Code><Region>{region.replace('<', '&lt;')}</Region></Error>"
    failure = await failed_fetch(raw_s3, http(400, error.encode(), (("Content-Type", "application/xml"),)))
    assert (failure.kind, str(failure)) == (
        "error", "GetObject 'a.jpg': AuthorizationHeaderMalformed (HTTP 400)")


async def test_a_shared_tier_whose_endpoint_is_a_web_server_answering_200_to_everything(node_factory, raw_s3,
                                                                                         tmp_path):
    """An `endpoint_url` on a web server's port (a catch-all page): every write was taken, so a purge
    answered its journal entry "written" though nothing was stored, and no other node would ever apply it.
    A PutObject answer names the ETag of what was stored; without one, nothing was."""
    raw_s3.answer = lambda method, target: http(200, b"<html><body>Welcome</body></html>",
                                                (("Content-Type", "text/html"),))
    node = await node_factory(write_config(tmp_path, local_config(
        before=f'[admin]\ntoken = "{TOKEN}"\n', after=shared_cache_table(raw_s3.url, "bkt", timeout=f"{TIMEOUT}s"))))
    response = await node.fetch("/tr:w-100/astronaut.jpg")
    assert response.code == 200 and decoded(response.body).width == 100, response.body[:200]
    purged = await node.fetch("/_edge/purge", method="POST", body=json.dumps({"url": "/astronaut.jpg"}).encode(),
                              headers={"Authorization": f"Bearer {TOKEN}"})
    assert purged.code == 502, purged.body[:200]
    assert json.loads(purged.body)["shared"]["journal"] == {"error": "bad_response"}
