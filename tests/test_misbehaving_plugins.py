"""An origin plugin that misbehaves costs its own origin, never the worker: what it raises beyond
`Exception`, a fetch that swallows its cancellation, an answer of the wrong type or over the size
limit, a failure kind of its own are each a clear answer, and the node goes on serving
(edge/chain.py `_fetch`)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from urllib.parse import quote, quote_plus

import pytest

from edge import chain, fetching, server
from edge import plugin as plugin_api
from edge.cache import original_key
from edge.config import load_config
from edge.errors import ConfigError, StartupError
from edge.logs import configure_logging
from edge.origin import Original, OriginRequest, OriginSettings
from edge.pluginmanager import load_plugins
from edge.settings import Secret, redact
from edge.testing import image_size, photo_image
from tests.nodes import SAMPLES, write_config
from tests.scrape import samples
from tests.servers import Behaviour, HTTPOrigin

#: the photo every behaviour but the bad ones answers with
PHOTO = photo_image(640, 480)
#: what a plugin may raise that is not an `Exception`
BEYOND_EXCEPTION = {"SystemExit": SystemExit(3), "KeyboardInterrupt": KeyboardInterrupt(),
                    "GeneratorExit": GeneratorExit(), "CancelledError": asyncio.CancelledError()}


class BytesOfItsOwn(bytes):
    """A subclass of bytes a plugin may return (numpy's `numpy.bytes_` is one), which pickle can store."""


class Unprintable(plugin_api.OriginFailure):
    def __str__(self) -> str:
        raise ValueError("no message")


#: a credential of a plugin's config (made a `Secret`, as `table.secret` makes it) that is a short lowercase word
KIND_SECRET = Secret("hunter_two")


class MisbehavingPlugin:
    """`type = "misbehaving"`: the path's first segment says how it fails; `good/…` is the photo."""

    EDGE_PLUGIN_API = "1.0"

    class MisbehavingOrigin(plugin_api.Origin):
        type_name = "misbehaving"

        @classmethod
        def from_config(cls, settings, table):
            table.finish()
            return cls(settings)

        async def fetch(self, request):
            behaviour = request.path.split("/")[0]
            if behaviour.startswith("raise-"):
                raise BEYOND_EXCEPTION[behaviour[6:]]
            if behaviour == "swallow":  # keeps going once cancelled, then ends by itself
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    await asyncio.sleep(1)
                return Original(PHOTO)
            if behaviour == "hang":  # until cancelled
                await asyncio.Event().wait()
            if behaviour == "thread-hang":  # a blocking call that outlasts the timeout, on a thread
                await plugin_api.in_thread(time.sleep, 2)
            if behaviour == "kind":
                raise plugin_api.OriginFailure("Made Up\r\nX-Injected: 1", "a kind of its own")
            if behaviour == "word-kind":  # a short lowercase word, then more
                raise plugin_api.OriginFailure("quota exceeded\r\nX-Injected: 1", "a word and more")
            if behaviour == "own-kind":  # a short lowercase word, none of the node's
                raise plugin_api.OriginFailure("quota_exceeded", "over the plan's quota")
            if behaviour == "secret-kind":  # a credential, which is a short lowercase word, as the kind
                raise plugin_api.OriginFailure(KIND_SECRET.reveal(), "the token as the kind")
            if behaviour == "unprintable":  # a failure of its own type whose message cannot be made
                raise Unprintable("refused", "never shown")
            if behaviour == "block":  # a blocking call in the coroutine: holds the whole worker
                time.sleep(1.5)
                return Original(PHOTO)
            if behaviour == "out-of-memory":  # an allocation that failed: the process at its memory limit
                raise plugin_api.OriginFailure("the body could not be read", "error") from MemoryError()
            if behaviour == "own-timeout":  # its client's, long before the node's
                raise TimeoutError("the client gave up")
            if behaviour == "own-wait-for":
                await asyncio.wait_for(asyncio.sleep(10), 0.01)
            if behaviour == "not-modified":  # whether or not it was asked conditionally
                raise plugin_api.NotModified(request.path)
            if behaviour == "datetime-modified":  # not an HTTP date: a datetime
                from datetime import datetime, timezone
                return Original(PHOTO, last_modified=datetime.now(timezone.utc))
            if behaviour == "local-bytes-subclass":  # one pickle cannot store
                class LocalBytes(bytes):
                    pass
                return Original(LocalBytes(PHOTO))
            return {"none": None, "text": "an image", "bytes-subclass": Original(BytesOfItsOwn(PHOTO)),
                    "text-body": Original("an image"), "number-etag": Original(PHOTO, etag=5),
                    "large": Original(b"\xff" * 2_000_001),
                    "good": Original(PHOTO)}[behaviour]

    class BrokenOrigin(plugin_api.Origin):
        """`type = "broken"`: `fails = "config"`, `"open"`, `"open-hangs"` or `"close-hangs"`, quoting its
        `key` when it fails."""

        type_name = "broken"

        @classmethod
        def from_config(cls, settings, table):
            origin = cls(settings)
            origin.fails, origin.key = table.str("fails"), table.secret("key")
            if origin.fails == "nothing":  # and forgets `table.finish()`
                return origin
            table.finish()
            if origin.fails == "config":
                raise ValueError(f"cannot use key={origin.key.reveal()}")
            if origin.fails.startswith("config-raise-"):
                raise BEYOND_EXCEPTION[origin.fails[13:]]
            if origin.fails == "config-error":  # as the docs say a bad value is refused
                raise table.error("key", f"{origin.key.reveal()!r} is not a valid key")
            return origin

        async def open(self):
            if self.fails == "open-hangs":
                await asyncio.sleep(60)
            if self.fails.startswith("open-raise-"):
                raise BEYOND_EXCEPTION[self.fails[11:]]
            if self.fails.startswith("open"):
                raise RuntimeError(f"refused key={self.key.reveal()}")

        def describe(self):
            if self.fails == "describe":  # as one reading what only `open()` makes
                raise AttributeError(f"no client for key={self.key.reveal()}")
            return super().describe()

        @property
        def takes_request_host(self):
            if self.fails == "takes-request-host":  # as one reading what only `open()` makes
                raise AttributeError(f"no client for key={self.key.reveal()}")
            return self.fails == "takes-host"

        def takes_host(self, host):
            raise ValueError(f"cannot tell, key={self.key.reveal()}")

        async def close(self):
            if self.fails == "close-hangs":
                await asyncio.sleep(60)

        async def fetch(self, request):
            raise plugin_api.OriginNotFound(request.path)

    @plugin_api.hookimpl
    def edge_origin_types(self):
        return [self.MisbehavingOrigin, self.BrokenOrigin]


@pytest.fixture
async def node(node_factory, tmp_path):
    return await node_factory(write_config(tmp_path, """
        [limits]
        max_source_bytes = "2MB"

        [[origins]]
        name = "plugin"
        type = "misbehaving"
        timeout = 0.5

        [[origins]]
        name = "files"
        type = "local"
        root = "{SAMPLES}"

        [[endpoints]]
        id = ""
        origins = ["plugin"]

        [[endpoints]]
        id = "files"
        origins = ["files"]
        """.replace("{SAMPLES}", str(SAMPLES))), MisbehavingPlugin())


async def served_afterwards(node) -> None:
    response = await node.fetch("/tr:w-64/good/photo.jpg")
    assert response.code == 200 and image_size(response.body) == (64, 48)


@pytest.mark.parametrize("raised", ["SystemExit", "KeyboardInterrupt", "GeneratorExit", "CancelledError"])
async def test_what_a_plugin_raises_beyond_exception_is_its_origins_failure(node, raised, caplog):
    response = await node.fetch(f"/tr:w-64/raise-{raised}/photo.jpg")
    assert (response.code, response.body, response.headers["X-Edge-Error"]) == (502, b"origin error\n",
                                                                                  "plugin: error")
    # where it was raised, in the log: it had said only its name, and the plugin's author has nothing else
    assert "raise BEYOND_EXCEPTION[behaviour[6:]]" in caplog.text
    await served_afterwards(node)


async def test_a_fetch_that_swallows_its_cancellation_is_answered_at_the_timeout(node, caplog):
    started = time.monotonic()
    response = await node.fetch("/tr:w-64/swallow/photo.jpg")
    assert (response.code, response.headers["X-Edge-Error"]) == (504, "plugin: timeout")
    assert "origin 'plugin' failed (timeout): no answer within 0.5s" in caplog.text
    # the timeout is 0.5 s, the plugin's own end 1.5 s (0.9 s as a bound was passed by 2 ms once, in CI's serial phase)
    assert time.monotonic() - started < 1.4
    await served_afterwards(node)


async def test_a_fetch_out_of_memory_is_the_nodes_503_not_the_origins_502(node):
    """A `MemoryError` (the process at its memory limit; here the cause of the plugin's failure) is the node's
    overload: reading a local file under a 420 MB `RLIMIT_AS` had been a 502 `imgs: error` blaming a healthy
    origin (scarce-resources probe)."""
    response = await node.fetch("/tr:w-64/out-of-memory/photo.jpg")
    assert (response.code, response.body) == (503, b"node overloaded: out of memory, retry later\n")
    assert (response.headers["X-Edge-Error"], response.headers["Retry-After"]) == ("out_of_memory", "1")
    fetches = samples((await node.fetch("/metrics")).body.decode(), "edge_origin_fetches_total", origin="plugin")
    assert {dict(labels)["outcome"]: n for labels, n in fetches.items() if n} == {"busy": 1}
    await served_afterwards(node)


@pytest.mark.parametrize("behaviour, raised", [("own-timeout", 'raise TimeoutError("the client gave up")'),
                                               ("own-wait-for", "await asyncio.wait_for(asyncio.sleep(10), 0.01)")])
async def test_a_timeout_error_the_plugin_raises_is_its_error_not_the_nodes_timeout(node, behaviour, raised, caplog):
    """It had been logged as the node's timeout, "no answer within 0.5s", at once and without its traceback, and
    answered 504 (plugin probe): it is an exception the plugin did not classify, as the guide says."""
    response = await node.fetch(f"/tr:w-64/{behaviour}/photo.jpg")
    assert (response.code, response.body, response.headers["X-Edge-Error"]) == (502, b"origin error\n",
                                                                                  "plugin: error")
    assert "origin 'plugin' raised an unexpected error" in caplog.text and raised in caplog.text
    assert "origin 'plugin' failed (error): TimeoutError" in caplog.text and "no answer within" not in caplog.text
    await served_afterwards(node)


@pytest.mark.parametrize("order", [("plugin", "web"), ("web", "plugin")])
async def test_a_chain_ending_in_a_timeout_and_another_failure_is_a_502_naming_both(node_factory, tmp_path, order):
    """A 504 says every origin timed out; one that answered 500 makes it a 502, whichever was asked first, and
    `X-Edge-Error` names each origin with its kind, in the endpoint's order (a mutation answering 504 for any
    timeout survived, and one naming the first failure alone)."""
    web = await HTTPOrigin(behaviour=Behaviour(status=500)).start()
    try:
        node = await node_factory(write_config(tmp_path, f"""
            [[origins]]
            name = "plugin"
            type = "misbehaving"
            timeout = 0.5

            [[origins]]
            name = "web"
            type = "web"
            base_url = "{web.url}"

            [[endpoints]]
            id = ""
            origins = {json.dumps(list(order))}
            """), MisbehavingPlugin())
        response = await node.fetch("/tr:w-64/swallow/photo.jpg")
    finally:
        await web.stop()
    kinds = {"plugin": "timeout", "web": "server_error"}
    assert (response.code, response.body, response.headers["X-Edge-Error"]) == (
        502, b"origin error\n", "; ".join(f"{name}: {kinds[name]}" for name in order))


async def test_an_origin_whose_blocking_calls_hang_holds_only_its_own_threads(node):
    hanging = [node.fetch(f"/tr:w-64/thread-hang/{n}.jpg") for n in range(fetching.ORIGIN_THREADS + 2)]
    started = time.monotonic()
    local = node.fetch("/files/tr:w-64/coffee.jpg")
    *hung, served = await asyncio.gather(*hanging, local)
    assert {response.code for response in hung} == {504} and served.code == 200
    assert image_size(served.body)[0] == 64 and time.monotonic() - started < 1.5


@pytest.mark.parametrize("behaviour, logged", [
    ("none", "fetch returned NoneType, not an Original of bytes"),
    ("text", "fetch returned str, not an Original of bytes"),
    ("text-body", "fetch returned an Original of str, not an Original of bytes"),
    ("number-etag", "an Original's etag is int, not text or None"),
    ("datetime-modified", "an Original's last_modified is datetime, not text or None (http_date(datetime) makes"),
])
async def test_an_answer_of_the_wrong_type_is_a_bad_response(node, behaviour, logged, caplog):
    response = await node.fetch(f"/tr:w-64/{behaviour}/photo.jpg")
    assert (response.code, response.headers["X-Edge-Error"]) == (502, "plugin: bad_response")
    assert logged in caplog.text  # what was wrong, by name


@pytest.mark.parametrize("behaviour", ["bytes-subclass", "local-bytes-subclass"])
async def test_a_body_of_a_bytes_subclass_is_kept_as_its_bytes_and_the_other_origins_originals_stay(
        node_factory, tmp_path, behaviour, caplog):
    """Kept as it was, diskcache pickled it: the originals tier read the pickle (or its failure to make one) as
    tampering, and was moved aside as corrupt, every origin's originals with it, at each such fetch (plugin probe)."""
    node = await node_factory(write_config(tmp_path, """
        [[origins]]
        name = "plugin"
        type = "misbehaving"

        [[origins]]
        name = "other"
        type = "misbehaving"

        [[endpoints]]
        id = ""
        origins = ["plugin"]

        [[endpoints]]
        id = "other"
        origins = ["other"]
        """), MisbehavingPlugin())
    assert (await node.fetch("/other/tr:w-64/good/photo.jpg")).code == 200
    for width in (64, 65, 66):  # the first fetches and keeps the original, the others read it back
        response = await node.fetch(f"/tr:w-{width}/{behaviour}/photo.jpg")
        assert response.code == 200 and image_size(response.body)[0] == width
    response = await node.fetch("/other/tr:w-65/good/photo.jpg")
    assert response.code == 200 and image_size(response.body)[0] == 65
    fetches = node.node.metrics.origin_fetches
    assert [fetches.labels(name, "found")._value.get() for name in ("plugin", "other")] == [1, 1]
    assert "corrupt" not in caplog.text


async def test_a_body_over_max_source_bytes_is_refused_and_not_kept(node):
    for width in (64, 65):  # the second without a fetch: every URL of it is refused so for a minute
        response = await node.fetch(f"/tr:w-{width}/large/photo.jpg")
        assert (response.code, response.body) == (400, b"source too large\n")
    assert node.node.metrics.origin_fetches.labels("plugin", "too_large")._value.get() == 1
    assert node.node.caches.originals.get(original_key("", "large/photo.jpg", None)) is None  # not kept


async def test_a_failure_kind_of_its_own_is_reported_as_error(node, caplog):
    response = await node.fetch("/tr:w-64/kind/photo.jpg")
    assert (response.code, response.headers["X-Edge-Error"]) == (502, "plugin: error")
    assert "X-Injected" not in response.headers
    # the log says why, on one line
    assert "a kind of its own (its kind 'Made Up\\r\\nX-Injected: 1' is not a short lowercase word" in caplog.text


async def test_a_failure_kind_that_only_begins_with_a_word_is_reported_as_error(node, caplog):
    """The whole kind must be the word: one that starts with one had its rest, line break and all, sent in
    `X-Edge-Error` (a mutation matching its start alone survived)."""
    response = await node.fetch("/tr:w-64/word-kind/photo.jpg")
    assert (response.code, response.headers["X-Edge-Error"]) == (502, "plugin: error")
    assert "X-Injected" not in response.headers
    assert "a word and more (its kind 'quota exceeded\\r\\nX-Injected: 1' is not a short lowercase word" \
        in caplog.text


async def test_a_failure_kind_of_its_own_is_counted_as_error_and_makes_its_origin_failing(node):
    """Its kind names it to the client, but the metrics' `outcome` stays one of the node's (a plugin's words are
    unbounded series, and the status page, counting the node's failure kinds, had shown the origin as ok: a
    mutation audit, where one counting the plugin's kind survived)."""
    for _ in range(3):
        response = await node.fetch("/tr:w-64/own-kind/photo.jpg")
        assert (response.code, response.headers["X-Edge-Error"]) == (502, "plugin: quota_exceeded")
    fetches = samples((await node.fetch("/metrics")).body.decode(), "edge_origin_fetches_total")
    assert {dict(labels)["outcome"]: n for labels, n in fetches.items() if n and ("origin", "plugin") in labels} \
        == {"error": 3}
    page = (await node.fetch("/_edge/status")).body.decode()
    assert "<td class=failing data-key='health:plugin'>failing</td>" in page
    assert 'data-key="failures_recent:plugin" data-value="3"' in page


async def test_a_credential_as_the_kind_is_reported_as_error(node, caplog):
    """A plugin that made its token the kind had it sent in `X-Edge-Error` and written in the access log."""
    response = await node.fetch("/tr:w-64/secret-kind/photo.jpg")
    assert (response.code, response.headers["X-Edge-Error"]) == (502, "plugin: error")
    assert "hunter_two" not in caplog.text
    assert "(its kind is a credential of the config: reported as error)" in caplog.text


async def test_a_failure_whose_message_cannot_be_made_is_its_origins_and_the_next_one_serves(node_factory, tmp_path,
                                                                                              caplog):
    """A plugin's `OriginFailure` whose `__str__` raises was a 500 (its message logged outside any guard),
    hiding the next origin of the chain."""
    (tmp_path / "files" / "unprintable").mkdir(parents=True)
    (tmp_path / "files" / "unprintable" / "photo.jpg").write_bytes(PHOTO)
    node = await node_factory(write_config(tmp_path, f"""
        [[origins]]
        name = "plugin"
        type = "misbehaving"

        [[origins]]
        name = "files"
        type = "local"
        root = "{tmp_path / 'files'}"

        [[endpoints]]
        id = ""
        origins = ["plugin", "files"]
        """), MisbehavingPlugin())
    for width in (64, 65):  # the second within the first's log interval
        response = await node.fetch(f"/tr:w-{width}/unprintable/photo.jpg")
        assert response.code == 200 and image_size(response.body)[0] == width
    assert "origin 'plugin' failed (refused): Unprintable (its message could not be made)" in caplog.text


async def test_a_fetch_that_holds_the_event_loop_past_its_timeout_is_named(node, caplog):
    """Nothing can stop it; it had ended unremarked, the request answered late (until `worker_timeout`)."""
    response = await node.fetch("/tr:w-64/block/photo.jpg")
    assert response.code == 200  # its answer is taken: it is there, however late
    assert "origin 'plugin': a fetch ended" in caplog.text and "the event loop was held" in caplog.text


async def test_a_cancellation_arriving_past_the_timeout_is_named_too(caplog):
    """A drain's 503 cancels the fetch it gave up on: run before the timeout that was due as long, it had ended
    the wait unremarked (so a test of a clock jump failed whenever the 503 came first)."""
    origin = MisbehavingPlugin.MisbehavingOrigin(OriginSettings("plugin", "misbehaving", timeout=0.1))
    waiting = asyncio.ensure_future(chain.fetch_one(origin, OriginRequest("hang/photo.jpg", max_bytes=1000)))
    await asyncio.sleep(0)  # it waits for the fetch
    time.sleep(0.1 + chain.LATE_SECONDS + 0.1)  # the event loop held: its timeout is due, and not yet run
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert "origin 'plugin': a fetch ended" in caplog.text


async def test_a_fetch_within_its_timeout_is_not_said_to_have_held_the_event_loop(node, caplog):
    """Only a wait ending LATE_SECONDS past the timeout is: a warning for every fetch would bury the one that says
    so (a mutation warning for every fetch survived)."""
    await served_afterwards(node)
    assert "a fetch ended" not in caplog.text


async def test_not_modified_raised_with_no_validators_is_a_bad_response(node, caplog):
    """There is no held version to reuse: it had been a 500, an assertion failing deep in the node."""
    response = await node.fetch("/tr:w-64/not-modified/photo.jpg")
    assert (response.code, response.headers["X-Edge-Error"]) == (502, "plugin: bad_response")
    assert "fetch raised NotModified, but the request had no validators" in caplog.text
    await served_afterwards(node)


def test_a_validator_too_long_to_name_outputs_by_is_dropped():
    request = OriginRequest("a.jpg", 10**6)
    kept = chain._checked(Original(PHOTO[:100], etag='"' + "e" * 2000 + '"', last_modified="Tue, 01 Dec 2026"),
                          request)
    assert (kept.etag, kept.last_modified) == (None, "Tue, 01 Dec 2026")


SECRET = "s3cr3t-value-of-the-plugin"


def broken_config(tmp_path, fails: str):
    return write_config(tmp_path, f"""
        [[origins]]
        name = "broken"
        type = "broken"
        fails = "{fails}"
        key = "{SECRET}"

        [[endpoints]]
        id = ""
        origins = ["broken"]
        """)


def test_a_from_config_that_raises_is_a_config_error_naming_the_type_not_the_secret(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_config(broken_config(tmp_path, "config"), load_plugins(MisbehavingPlugin()))
    assert "the 'broken' origin type failed to read its table: ValueError: cannot use key=****" in str(raised.value)
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize("raised", ["SystemExit", "KeyboardInterrupt", "GeneratorExit", "CancelledError"])
def test_a_from_config_that_raises_beyond_exception_is_a_config_error_too(tmp_path, raised):
    """Beyond `Exception`: on a SIGHUP, it had ended the supervisor, and so the node (check-config: a traceback)."""
    with pytest.raises(ConfigError) as error:
        load_config(broken_config(tmp_path, f"config-raise-{raised}"), load_plugins(MisbehavingPlugin()))
    assert f"the 'broken' origin type failed to read its table: {raised}" in str(error.value)


def test_a_key_no_origin_type_reads_is_refused_even_if_the_type_forgets_to_finish(tmp_path):
    config = broken_config(tmp_path, "nothing")
    config.write_text(config.read_text().replace('fails = "nothing"', 'fails = "nothing"\ntimeuot = "5s"'))
    with pytest.raises(ConfigError) as raised:
        load_config(config, load_plugins(MisbehavingPlugin()))
    assert str(raised.value).endswith("[origins[0] 'broken'] timeuot: unknown key (did you mean `timeout`?)")


def test_a_table_error_quoting_a_secret_written_in_the_config_masks_it(tmp_path):
    """A plugin refusing a credential as the docs say (`table.error`), quoting it: a value written in the file,
    not given by `${NAME}`, had been printed as it was, by check-config, at start and in a reload's log line."""
    with pytest.raises(ConfigError) as raised:
        load_config(broken_config(tmp_path, "config-error"), load_plugins(MisbehavingPlugin()))
    assert str(raised.value).endswith("[origins[0] 'broken'] key: '****' is not a valid key")


class NoFromConfigPlugin:
    EDGE_PLUGIN_API = "1.0"

    class Forgetful(plugin_api.Origin):
        type_name = "forgetful"

        async def fetch(self, request):
            raise plugin_api.OriginNotFound(request.path)

    @plugin_api.hookimpl
    def edge_origin_types(self):
        return [self.Forgetful]


def test_a_class_without_its_own_from_config_is_told_so(tmp_path):
    """`Origin.from_config` is a stub returning None: "returned NoneType" alone left the author guessing."""
    config = write_config(tmp_path, '[[origins]]\nname = "o"\ntype = "forgetful"\n\n'
                                    '[[endpoints]]\nid = ""\norigins = ["o"]\n')
    with pytest.raises(ConfigError) as raised:
        load_config(config, load_plugins(NoFromConfigPlugin()))
    assert ("the 'forgetful' origin type's from_config returned NoneType, not an origin (its class does not "
            "define from_config") in str(raised.value)


class RevealingPlugin:
    """An origin that keeps its credential revealed in a public attribute (a header made up front), and
    attributes that `json.dumps` cannot write."""

    EDGE_PLUGIN_API = "1.0"

    class Revealing(plugin_api.Origin):
        type_name = "revealing"

        @classmethod
        def from_config(cls, settings, table):
            origin = cls(settings)
            origin.token = table.secret("token")
            origin.authorization = f"Bearer {origin.token.reveal()}"
            origin.loop = [1]
            origin.loop.append(origin.loop)  # JSON cannot write it
            origin.unprintable = Unprintable("error", "")  # nor its text be made
            table.finish()
            return origin

        async def fetch(self, request):
            raise plugin_api.OriginNotFound(request.path)

    @plugin_api.hookimpl
    def edge_origin_types(self):
        return [self.Revealing]


def test_check_config_masks_a_credential_a_plugin_keeps_revealed(tmp_path, capsys):
    """docs/origins.md: credentials never appear in `check-config` output. A `Secret` prints masked, but
    a plugin's public attribute built from its value had been printed as it was; one that holds itself,
    or whose text cannot be made, had failed the command with a traceback."""
    from argparse import Namespace

    from edge import cli
    config = load_config(write_config(tmp_path, f'[[origins]]\nname = "o"\ntype = "revealing"\ntoken = "{SECRET}"\n\n'
                                                '[[endpoints]]\nid = ""\norigins = ["o"]\n'),
                         load_plugins(RevealingPlugin()))
    assert cli._check_config(config, Namespace(bind_check=False, fetch=[])) == 0
    printed = capsys.readouterr()
    assert '"authorization": "Bearer ****"' in printed.out and '"token": "****"' in printed.out
    assert '"loop": "[1, [...]]"' in printed.out and '"unprintable": "<Unprintable>"' in printed.out
    assert SECRET not in printed.out + printed.err


@pytest.mark.parametrize("fails, reason", [("open", "RuntimeError: refused key=****"),
                                           ("open-hangs", "no answer in 0.2 s")])
async def test_an_origin_that_does_not_open_is_named(tmp_path, monkeypatch, fails, reason):
    monkeypatch.setattr(server, "ORIGIN_OPEN_SECONDS", 0.2)
    node = server.Node(load_config(broken_config(tmp_path, fails), load_plugins(MisbehavingPlugin())))
    with pytest.raises(StartupError) as raised:
        await node.start()
    assert str(raised.value) == f"origin 'broken' (type 'broken') did not open: {reason}"


@pytest.mark.parametrize("raised", BEYOND_EXCEPTION)
async def test_an_open_that_raises_beyond_exception_is_named_too(tmp_path, raised):
    """A `KeyboardInterrupt`, `GeneratorExit` or `CancelledError` of its own had been `worker 0 crashed` and a
    traceback through asyncio, repeated by every worker, the origin named nowhere."""
    node = server.Node(load_config(broken_config(tmp_path, f"open-raise-{raised}"), load_plugins(MisbehavingPlugin())))
    with pytest.raises(StartupError) as refused:
        await node.start()
    assert str(refused.value).startswith(f"origin 'broken' (type 'broken') did not open: {raised}")


def test_a_describe_that_raises_neither_ends_a_reload_nor_check_config(tmp_path, capsys):
    """A plugin's `describe()` that raised had ended the supervisor at a SIGHUP (the reload compares the origins'
    summaries), the whole node down; and `check-config` with a traceback."""
    from argparse import Namespace

    from edge import cli
    from edge.config import endpoints_fetching_elsewhere, origin_identities
    (tmp_path / "before").mkdir()
    before = load_config(broken_config(tmp_path / "before", "nothing"), load_plugins(MisbehavingPlugin()))
    after = load_config(broken_config(tmp_path, "describe"), load_plugins(MisbehavingPlugin()))
    moved = endpoints_fetching_elsewhere(origin_identities(before), after)
    assert [endpoint.id for endpoint in moved] == [""]  # it may have changed
    assert cli._check_config(after, Namespace(bind_check=False, fetch=[])) == 0
    printed = capsys.readouterr()
    assert '"describe()": "raised AttributeError"' in printed.out and SECRET not in printed.out + printed.err


def test_a_takes_request_host_that_raises_is_a_config_error(tmp_path):
    """Every worker reads it as it starts: one that raised ended each, and the node after ten restarts."""
    with pytest.raises(ConfigError) as raised:
        load_config(broken_config(tmp_path, "takes-request-host"), load_plugins(MisbehavingPlugin()))
    assert str(raised.value).endswith("[origins[0] 'broken'] type: the 'broken' origin type's takes_request_host "
                                      "raised AttributeError: no client for key=****")


async def test_a_takes_host_that_raises_is_a_no_logged_once(node_factory, tmp_path, caplog):
    """It had been a 500 for every request of the endpoint, with two tracebacks each."""
    node = await node_factory(broken_config(tmp_path, "takes-host"), MisbehavingPlugin())
    for host in ("a.example", "b.example"):
        response = await node.fetch("/a.jpg", headers={"Host": host})
        assert (response.code, response.body) == (404, b"not found\n")
    lines = [r.getMessage() for r in caplog.records if "takes_host raised" in r.getMessage()]
    assert lines == ["origin 'broken': takes_host raised ValueError: cannot tell, key=****; the Host is not given "
                     "to it"]


async def test_a_close_that_hangs_does_not_hold_a_stopping_worker(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(server, "ORIGIN_CLOSE_SECONDS", 0.2)
    node = server.Node(load_config(broken_config(tmp_path, "close-hangs"), load_plugins(MisbehavingPlugin())))
    await node.start()
    started = time.monotonic()
    await node.stop()
    assert time.monotonic() - started < 3
    assert "origin 'broken' did not close: no answer in 0.2 s" in caplog.text


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_logs_mask_the_configs_credentials_tracebacks_included(tmp_path, capsys, log_format):
    load_config(broken_config(tmp_path, "open"), load_plugins(MisbehavingPlugin()))  # its Secret is made
    configure_logging("info", log_format)
    try:
        try:
            raise ValueError(f"a plugin quoting key={SECRET}")
        except ValueError:
            logging.getLogger("edge.origin").exception("origin %r failed: %s", "broken", f"key={SECRET}")
        written = capsys.readouterr().err
    finally:
        with capsys.disabled():  # the handler left behind writes to the real stderr, not the closed capture
            configure_logging("info", "text")
    assert SECRET not in written and written.count("key=****") == 2  # the message and the traceback
    if log_format == "json":
        line = json.loads(written.strip().splitlines()[-1])
        assert "ValueError: a plugin quoting key=****" in line["traceback"]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_credential_is_masked_however_a_line_escapes_it(capsys, log_format):
    """Quotes, backslashes and non-ASCII come out escaped in the JSON format and in a repr, and a URL
    carries a credential percent-encoded: each of those forms of it is masked too. A traceback is escaped before
    it is masked (a mutation masking only the unescaped forms left it in clear there, and survived)."""
    secret = 'pa"ss\\wörd/+ key'
    Secret(secret)
    configure_logging("info", log_format)
    try:
        logging.getLogger("edge.origin").warning("as it is %s, repr %r, in a URL %s and %s", secret, secret,
                                                 quote(secret, safe=""), quote_plus(secret))
        try:
            raise ValueError(f"a plugin quoting {secret}")
        except ValueError:
            logging.getLogger("edge.origin").exception("origin failed")
        written = capsys.readouterr().err
    finally:
        with capsys.disabled():  # the handler left behind writes to the real stderr, not the closed capture
            configure_logging("info", "text")
    first = written.splitlines()[0]
    message = json.loads(first)["message"] if log_format == "json" else first
    assert message.endswith("as it is ****, repr '****', in a URL **** and ****")
    assert "ValueError: a plugin quoting ****" in (json.loads(written.splitlines()[-1])["traceback"]
                                                   if log_format == "json" else written)
    for form in (secret, json.dumps(secret)[1:-1], repr(secret)[1:-1], quote(secret, safe=""), quote_plus(secret)):
        assert form not in written, form
    assert redact(f"{secret.encode()!r} {quote(secret).lower()}") == "b'****' ****"


@pytest.mark.parametrize("length", [999, 60_000])
async def test_a_read_of_another_length_than_announced_is_a_bad_response(length):
    async def read():
        return b"\xff" * length

    with pytest.raises(plugin_api.OriginFailure) as raised:
        await plugin_api.read_announced(read, 1000, 10**6, "a.jpg")
    assert raised.value.kind == "bad_response" and f"{length} bytes where 1000 were announced" in str(raised.value)
