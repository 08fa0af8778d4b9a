"""What varies the answer is in the cache key (the forwarded Host), and what comes from data is
encoded before it becomes a header (the canonical `Link`, an origin's header values)."""

import asyncio
import email.utils
import os
import shutil
import time
from urllib.parse import quote

import pytest

from edge.cache import SourceInfo
from tests.assets import centre_colour, colour, same_colour, solid
from tests.nodes import SAMPLES, decode, local_config, write_config
from tests.servers import HTTPOrigin

RED, BLUE = colour(9), colour(90)


@pytest.fixture
async def vhost_origin():
    """One web server, two virtual hosts, each with its own `logo.jpg`."""
    server = await HTTPOrigin(vhosts={"a.example": {"logo.jpg": solid(80, 40, RED)},
                                      "b.example": {"logo.jpg": solid(80, 40, BLUE)}}).start()
    yield server
    await server.stop()


def vhost_config(origin: HTTPOrigin, forward_host: str) -> str:
    return f"""
[[origins]]
name = "web"
type = "web"
base_url = "{origin.url}"
forward_host = {forward_host}

[[endpoints]]
id = ""
origins = ["web"]
"""


async def test_with_forward_host_each_host_gets_its_own_image_never_the_others(vhost_origin, node_factory,
                                                                               tmp_path):
    node = await node_factory(write_config(tmp_path, vhost_config(vhost_origin, "true")))

    async def logo(host: str, transformation: str = "w-40"):
        response = await node.fetch(f"/tr:{transformation}/logo.jpg", headers={"Host": host})
        assert response.code == 200
        return response

    for _ in range(2):  # a miss, then a hit: neither crosses over
        assert same_colour(centre_colour(decode(await logo("a.example"))), RED)
        assert same_colour(centre_colour(decode(await logo("b.example"))), BLUE)
    # another size is made from the stored original of the same host
    assert same_colour(centre_colour(decode(await logo("B.Example", "w-30"))), BLUE)
    assert same_colour(centre_colour(decode(await logo("a.example", "w-30"))), RED)
    assert vhost_origin.requests == {"logo.jpg": 2}  # one fetch per host
    # a Host the origin does not serve is that host's 404, not somebody else's image
    assert (await node.fetch("/tr:w-40/logo.jpg", headers={"Host": "rogue.example"})).code == 404


async def test_with_a_list_of_forwarded_hosts_any_other_host_shares_base_urls_one_entry(vhost_origin, node_factory,
                                                                                           tmp_path):
    green = colour(50)
    vhost_origin.files["logo.jpg"] = solid(80, 40, green)  # base_url's own host's
    node = await node_factory(write_config(tmp_path, vhost_config(vhost_origin, '["a.example", "B.Example"]')))

    async def centre(host: str):
        response = await node.fetch("/tr:w-40/logo.jpg", headers={"Host": host})
        assert response.code == 200
        return centre_colour(decode(response))

    assert same_colour(await centre("a.example"), RED)
    assert same_colour(await centre("b.example"), BLUE)
    for port in range(8080, 8090):  # listed: the host's name decides, sent and keyed (ports had been 10 entries)
        assert same_colour(await centre(f"A.EXAMPLE:{port}"), RED)
    assert same_colour(await centre("a.example.:99"), RED)
    for number in range(40):  # Hosts a client invents: base_url's own image, one fetch, one entry
        assert same_colour(await centre(f"rogue-{number}.example"), green)
    assert same_colour(await centre("127.0.0.1"), green)
    assert vhost_origin.requests == {"logo.jpg": 3}  # a.example, b.example and base_url's host
    sent = {seen["Host"] for seen in vhost_origin.headers_seen}
    assert sent == {"a.example", "b.example", vhost_origin.url.removeprefix("http://")}


@pytest.fixture
def oddly_named(tmp_path):
    """A local folder whose file names are not Latin-1, or hold `>`, `;`, `"`, `,`."""
    folder = tmp_path / "images"
    folder.mkdir()
    body = (SAMPLES / "coffee.jpg").read_bytes()
    names = ["€uro.jpg", "日本.jpg", 'a>b;c"d,e.jpg']
    for name in names:
        (folder / name).write_bytes(body)
    return folder, names


async def test_the_canonical_link_percent_encodes_the_path(oddly_named, node_factory, tmp_path):
    folder, names = oddly_named
    config = local_config(folder).replace('type = "local"',
                                          'type = "local"\ncanonical_base_url = "https://cdn.example.com/img/"')
    node = await node_factory(write_config(tmp_path, config))
    for name in names:
        response = await node.fetch("/tr:w-40/" + quote(name))
        assert response.code == 200 and decode(response).width == 40
        assert response.headers["Link"] == f'<https://cdn.example.com/img/{quote(name)}>; rel="canonical"'
        assert response.headers["Link"].isascii()
        hit = await node.fetch("/tr:w-40/" + quote(name))
        assert (hit.headers["X-Cache"], hit.headers["Link"]) == ("HIT", response.headers["Link"])


BAD_VALUES = [b"Mon, 01 Jan 2024 00:00:00 GMT\x01", "Mon, 01 Jan 2024 00:00:00 \u20acST".encode(), b"\xe9t\xe9",
              b"a\x7fb"]


#: an origin's `Last-Modified` that is a valid header value → what the node answers (None: none)
LAST_MODIFIED = {b"Mon, 01 Jan 2024 02:00:00 +0200": "Mon, 01 Jan 2024 00:00:00 GMT",  # sent as IMF-fixdate
                 b"Sunday, 31-Dec-23 23:00:00 GMT": "Sun, 31 Dec 2023 23:00:00 GMT",  # RFC 850's form
                 b"yesterday": None, b"Mon, 01 Jan 99999 00:00:00 GMT": None,
                 b"Tue, 01 Jan 2036 00:00:00 GMT": "now",  # in the future: the time of the fetch
                 b"Mon, 01 Jan 9999999999999999999 00:00:00 GMT": None,  # past what the platform's time takes
                 b"Mon, 01 Jan 2024 00:00:00 +9999999999999999999": None}  # a zone that takes it there


@pytest.fixture
async def raw_origin():
    """An HTTP server answering with the raw bytes of `BAD_VALUES[n]` as its `Last-Modified` and `ETag`
    for `/n.jpg` (real servers and proxies send such things; Tornado would refuse to), and with the n-th
    of `LAST_MODIFIED` as its `Last-Modified` (and a quoted ETag) for `/date-n.jpg`."""
    image = solid(60, 30, RED)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            name = request.split(b" ")[1].strip(b"/").split(b".")[0]
            etag = value = BAD_VALUES[int(name)] if name.isdigit() else list(LAST_MODIFIED)[int(name[5:])]
            if not name.isdigit():
                etag = b'"%s"' % name
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\nLast-Modified: %s\r\nETag: %s\r\n\r\n%s"
                         % (len(image), value, etag, image))
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    server.close()
    await server.wait_closed()


async def test_an_invalid_header_value_from_the_origin_is_dropped(raw_origin, node_factory, tmp_path):
    from tests.nodes import web_config
    node = await node_factory(write_config(tmp_path, web_config(raw_origin)))
    for n in range(len(BAD_VALUES)):
        for expected_cache in ("MISS", "HIT"):
            response = await node.fetch(f"/tr:w-20/{n}.jpg")
            assert (response.code, response.headers["X-Cache"]) == (200, expected_cache)
            assert decode(response).width == 20
            assert "Last-Modified" not in response.headers


def test_an_origin_s_validators_and_type_that_cannot_be_sent_on_are_dropped_as_they_are_stored():
    """What an origin answered is kept to be sent on (to clients) and back (If-None-Match, If-Modified-Since): a
    value with a control or non-ASCII byte, or longer than a header line the node passes on, is dropped."""
    longest = "x" * 1024
    for bad in [*BAD_VALUES, b"x" * 1025, b" leading space"]:
        text = bad.decode("latin-1")
        info = SourceInfo.from_origin("web", '"v"', 0.0, text, text, text)
        assert (info.etag, info.last_modified, info.content_type) == (None, None, None), bad
    kept = SourceInfo.from_origin("web", '"v"', 0.0, f'"{longest[2:]}"', longest, "image/jpeg")
    assert (kept.etag, kept.last_modified, kept.content_type) == (f'"{longest[2:]}"', longest, "image/jpeg")


async def test_last_modified_is_an_imf_fixdate_never_in_the_future(raw_origin, node_factory, tmp_path):
    # RFC 9110 5.6.7: a sender sends the IMF-fixdate form only; 8.8.2.1: an origin server never sends a
    # Last-Modified later than its Date. The origin's value had been passed on as it came.
    from tests.nodes import web_config
    node = await node_factory(write_config(tmp_path, web_config(raw_origin)))
    for n, expected in enumerate(LAST_MODIFIED.values()):
        before = int(time.time())
        for expected_cache in ("MISS", "HIT"):
            response = await node.fetch(f"/tr:w-20/date-{n}.jpg")
            assert (response.code, response.headers["X-Cache"]) == (200, expected_cache)
            answered = response.headers.get("Last-Modified")
            if expected == "now":
                assert before <= email.utils.parsedate_to_datetime(answered).timestamp() <= time.time()
                assert answered.endswith(" GMT") and answered <= response.headers["Date"]
            else:
                assert answered == expected


async def test_last_modified_is_never_after_the_answers_date(node_factory, tmp_path):
    """A time in the future is answered as when the origin confirmed it, which the answer's `Date` must follow
    (RFC 9110 8.8.2.1): a `Date` taken as the request came had preceded a confirmation in a later second, and
    the client's `If-Unmodified-Since: <that Date>` was refused with a 412 (a CI run's flaky failure). Here the
    cache's threads are busy for 1.1 s (a slow disk) as the request comes."""
    from edge.cache.caches import IO_THREADS
    from tests.nodes import until
    shutil.copyfile(SAMPLES / "coffee.jpg", tmp_path / "coffee.jpg")
    os.utime(tmp_path / "coffee.jpg", (2082758400, 2082758400))  # 2036
    node = await node_factory(write_config(tmp_path, local_config(tmp_path)))
    busy = []

    def slow_disk() -> None:
        busy.append(1)
        time.sleep(1.1)
    held = [asyncio.ensure_future(node.node.caches.io(slow_disk)) for _ in range(IO_THREADS)]

    async def all_busy() -> bool:
        return len(busy) == IO_THREADS
    await until(all_busy, "the cache's threads held")
    response = await node.fetch("/tr:w-20/coffee.jpg")
    await asyncio.gather(*held)
    last_modified, date = (email.utils.parsedate_to_datetime(response.headers[name])
                           for name in ("Last-Modified", "Date"))
    assert response.code == 200 and last_modified <= date
    since = await node.fetch("/tr:w-20/coffee.jpg", headers={"If-Unmodified-Since": response.headers["Date"]})
    assert (since.code, since.headers["X-Cache"]) == (200, "HIT")


async def test_a_file_modified_in_the_future_is_last_modified_now(node_factory, tmp_path):
    shutil.copyfile(SAMPLES / "coffee.jpg", tmp_path / "coffee.jpg")
    os.utime(tmp_path / "coffee.jpg", (2082758400, 2082758400))  # 2036: a clock that was wrong, an archive
    node = await node_factory(write_config(tmp_path, local_config(tmp_path)))
    before = int(time.time())
    response = await node.fetch("/tr:w-20/coffee.jpg")
    assert before <= email.utils.parsedate_to_datetime(response.headers["Last-Modified"]).timestamp() <= time.time()
    # and If-Unmodified-Since is compared with what was answered
    since = await node.fetch("/tr:w-20/coffee.jpg", headers={"If-Unmodified-Since": response.headers["Date"]})
    assert since.code == 200
