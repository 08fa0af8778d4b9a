"""Random arguments to the `edge` commands an operator runs by hand (`check-config`, `purge`, `url`, `cache
stats`, `new-plugin`, `cloudinary-check`, `plugins`), on a config of their own over a temporary cache: every
run ends in an exit status with a message, never a traceback (`serve` and `warm` talk to sockets:
`tests/test_cli_checks.py` and `tests/test_warm_and_cache_stats.py` hold them)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge import cli
from edge.logs import configure_logging
from tests.nodes import SAMPLES, local_config, write_config

EXAMPLES = 200
#: what a command may end in: done, failed (config, a URL not served), bad usage, a purge left undone
EXIT_STATUSES = {0, 1, 2, 3}

texts = st.one_of(
    st.sampled_from(["", " ", "/", "a.jpg", "/tr:w-100/astronaut.jpg", "../etc/passwd", "a/./b.jpg", "%00", "\x00",
                     "a\r\nb", "http://img.example.com/a.jpg", "https://[::1/a.jpg", "w-100", "w-100,h-abc",
                     "tr:w-100", "-1", "99999999999999999999", "é", "\ud800", "*", "--", "-x"]),
    st.text(max_size=30))
numbers = st.one_of(st.integers(-10**12, 10**12), st.sampled_from([0, -1, 2**63])).map(str)


@st.composite
def command_lines(draw, folder: str) -> list[str]:
    """`folder`: the workspace, holding `urls.txt` (and `plugins/`, where `new-plugin` writes)."""
    command = draw(st.sampled_from(["check-config", "purge", "url", "cache", "new-plugin", "cloudinary-check",
                                    "plugins"]))
    if command == "check-config":
        return ["check-config", *draw(st.lists(st.sampled_from(["--no-env"]), max_size=1))]
    if command == "purge":
        return ["purge", draw(st.sampled_from(["--url", "--prefix"])), draw(texts)]
    if command == "url":
        line = ["url", "--path", draw(texts)]
        for option, values in (("--tr", texts), ("--endpoint", st.sampled_from(["", "nope", "img"])),
                               ("--tr-position", st.sampled_from(["path", "query"])),
                               (draw(st.sampled_from(["--expires-in", "--expires-at"])), numbers),
                               ("--base-url", texts)):
            if draw(st.booleans()):
                line += [option, draw(values)]
        return line
    if command == "cache":
        return ["cache", "stats", "--top", draw(numbers), *draw(st.lists(st.just("--json"), max_size=1))]
    if command == "new-plugin":
        return ["new-plugin", draw(texts), "--dir", f"{folder}/plugins"]
    if command == "cloudinary-check":
        line = ["cloudinary-check", "--urls", draw(st.sampled_from([f"{folder}/urls.txt", f"{folder}/none.txt",
                                                                    folder]))]
        # a port nothing listens on: a fetch fails at once, as the report then says
        return line + draw(st.sampled_from([[], ["--base-url", "http://127.0.0.1:9"], ["--base-url", draw(texts)]]))
    return ["plugins", *draw(st.lists(st.just("--json"), max_size=1))]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    config = write_config(tmp_path, local_config(SAMPLES, before=f'[cache]\ndir = "{tmp_path}/cache"\n'))
    monkeypatch.setenv("EDGE_CONFIG", str(config))
    (tmp_path / "urls.txt").write_text("\n".join([
        "https://res.cloudinary.com/demo/image/upload/w_100/sample.jpg", "/demo/image/upload/l_x/a.jpg",
        "not a url", "", "\x00", "https://[::1/a.jpg", "/" + "a" * 5000]), encoding="utf-8")
    yield tmp_path
    configure_logging("info", "text")  # the commands set the process's logging up as their config says


def test_random_command_lines_end_in_an_exit_status_never_a_traceback(workspace, capsys):
    statuses = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(argv=command_lines(str(workspace)))
    def one(argv):
        try:
            status = cli.main(argv)
        except SystemExit as exit_:  # argparse refusing the usage
            status = exit_.code
        written = capsys.readouterr()
        assert status in EXIT_STATUSES, (argv, status, written.err[-2000:])
        assert "Traceback" not in written.err + written.out, (argv, written.err[-2000:])
        statuses.append(status)

    one()
    assert {0, 2} <= set(statuses), statuses  # some commands ran, some were refused
