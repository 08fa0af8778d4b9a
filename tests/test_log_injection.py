"""What a client or an origin can put in the node's diagnostic log (stderr): no line of its own, no
terminal escape, no line longer than the cap, no line per request, no query string. Each test runs
`edge serve` over loopback, sends the hostile input and reads the lines the node wrote."""

from __future__ import annotations

import re

from edge.logs import MAX_MESSAGE_CHARS
from edge.testing import running_node

#: how every line of the text format begins (`%(asctime)s %(levelname)s`)
LINE_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")
#: a line that, unescaped, would pass for the node's own
FORGED = "2030-01-01 00:00:00,000 ERROR edge forged by the test"


def assert_every_line_is_the_nodes(log: list[str]) -> None:
    """Each line the node wrote starts as its format does, holds no control character and is capped."""
    for line in filter(None, log):
        assert LINE_START.match(line), line
        assert line.rstrip("\n").isprintable(), line
        assert len(line) < MAX_MESSAGE_CHARS + 200, len(line)


def test_an_s3_error_code_with_a_line_break_is_escaped_in_the_failure_line(s3, tmp_path):
    """The store's error `Code` is quoted in the origin's failure (`GetObject 'a.jpg': <Code> (HTTP 500)`):
    an XML `&#13;&#10;` in it had written a line of the store's choosing."""
    s3.client().create_bucket(Bucket="log-forging")
    config = s3.origin_table("store", "log-forging") + """
[[endpoints]]
id = ""
origins = ["store"]
"""
    with running_node(config, tmp_path) as node:
        s3.faults.status = 500
        s3.faults.code = f"SlowDown&#13;&#10;{FORGED}"  # XML 1.0 has no ESC, even as &#27;
        status, _, _ = node.get("/a.jpg")
        assert status == 502
        line = node.wait_for_log(r"origin 'store' failed").string
        assert line.rstrip("\n").endswith(f"GetObject 'a.jpg': SlowDown\\r\\n{FORGED} (HTTP 500)")
        assert_every_line_is_the_nodes(node.log)
