"""Third-party origin plugins as an operator meets them: installed with pip, found through their entry
point alone, listed by `edge plugins`; a broken one skipped with a warning naming it, so that every
config that does not use it keeps working."""

from __future__ import annotations

import ast
import asyncio
import datetime
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tomllib
import zipfile
from pathlib import Path

import pytest

from edge import __version__ as edge_version
from edge import plugin as plugin_api
from edge.pluginmanager import api_problem, load_plugins
from edge.scaffold import new_plugin
from edge.settings import REDACTED_MIN_CHARS
from edge.supervisor import HEARTBEAT_SECONDS
from edge.testing import NodeProcess, ServingNode, image_size, photo_image, running_node
from tests.nodes import MARKED_ORIGINS, install_plugin, local_config, polled, write_config

ROOT = Path(__file__).resolve().parent.parent
#: a config that uses only built-in types
LOCAL = local_config()


def pip_install(site: Path, *packages: Path) -> None:
    """`pip install --target site`: the plugin is installed for the processes given `PYTHONPATH=site`,
    and the test environment stays as it is."""
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--target", str(site), *map(str, packages)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def edge(*args: str, site: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=cwd)


def test_a_new_plugin_passes_its_own_test_and_shows_in_edge_plugins(tmp_path):
    """`edge new-plugin` → a package written against `edge.plugin` only, installed with pip, whose
    own test (with `edge.testing.running_node`) passes, and which `edge plugins` lists."""
    made = edge("new-plugin", "sqlite", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    package = tmp_path / "edge-sqlite-origin"
    module = (package / "edge_sqlite_origin" / "__init__.py").read_text()
    assert set(re.findall(r"^from (\S+) import", module, re.M)) <= {"__future__", "asyncio", "datetime",
                                                                    "pathlib", "edge.plugin"}
    site = tmp_path / "site"
    pip_install(site, package)

    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package)],
                            capture_output=True, text=True, timeout=300, cwd=package,
                            env={**os.environ, "PYTHONPATH": str(site)})
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout

    listed = edge("plugins", site=site)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert re.search(r"^sqlite +edge-sqlite-origin +0\.1\.0 +sqlite$", listed.stdout, re.M), listed.stdout
    assert re.search(r"^s3 +edge-image-node +\S+ +s3$", listed.stdout, re.M), listed.stdout

    assert "already exists" in edge("new-plugin", "sqlite", "--dir", str(tmp_path)).stderr
    assert "not a valid origin type name" in edge("new-plugin", "Bad-Name", "--dir", str(tmp_path)).stderr
    # a built-in type's name: the plugin would be skipped (the message had said both types were refused)
    taken = edge("new-plugin", "local", "--dir", str(tmp_path))
    assert taken.returncode == 2 and not (tmp_path / "edge-local-origin").exists()
    assert re.fullmatch(r"edge: origin type 'local' is already provided by edge-image-node \S+: a plugin providing a "
                        r"built-in type is skipped, and the built-in serves; choose another name\n", taken.stderr)
    taken = edge("new-plugin", "sqlite", "--dir", str(tmp_path / "again"), site=site)  # an installed plugin's
    assert taken.returncode == 2 and taken.stderr == (
        "edge: origin type 'sqlite' is already provided by edge-sqlite-origin 0.1.0: two plugins with one type name "
        "are refused wherever it is used; choose another name\n")


def test_a_new_plugin_of_a_type_of_several_words_is_named_after_each_and_loads(tmp_path):
    folder = new_plugin("photo_store", tmp_path)
    assert folder == tmp_path / "edge-photo-store-origin"
    made = {path.relative_to(folder).as_posix(): path.read_text() for path in folder.rglob("*") if path.is_file()}
    assert set(made) == {"README.md", "pyproject.toml", "edge_photo_store_origin/__init__.py",
                         "tests/test_edge_photo_store_origin.py"}
    assert not [name for name, text in made.items() if re.search(r"__[A-Z_]+__", text)]  # every word filled in
    project = tomllib.loads(made["pyproject.toml"])["project"]
    assert (project["name"], project["entry-points"]) == ("edge-photo-store-origin",
                                                          {"edge.plugins": {"photo_store": "edge_photo_store_origin"}})
    spec = importlib.util.spec_from_file_location("edge_photo_store_origin",
                                                  folder / "edge_photo_store_origin" / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    plugins = load_plugins(module)
    assert plugins.origin_type("photo_store").__name__ == "PhotoStoreOrigin"
    assert "edge_photo_store_origin" not in {plugin.name for plugin in plugins.failed}
    # it declares the lowest API it uses, so that it loads on older nodes too: `read_announced` came in 1.2, and it
    # imports none of what came later
    assert module.EDGE_PLUGIN_API == "1.2"
    imported = {alias.name for node in ast.walk(ast.parse(made["edge_photo_store_origin/__init__.py"]))
                if isinstance(node, ast.ImportFrom) and node.module == "edge.plugin" for alias in node.names}
    assert "read_announced" in imported
    assert not imported & {"USER_AGENT", "without_userinfo", "IMAGE_EXTENSIONS", "host_name", "fetch_memory",
                           "FetchMemoryExhausted"}


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory) -> Path:
    """Installed plugins that cannot load: one fails to import, one exits as it imports, two need a newer plugin API,
    one marks no hook. They
    are laid out as pip installs a package (the module and a `.dist-info` with the entry point),
    written directly: what is under test is the node, not pip."""
    site = tmp_path_factory.mktemp("site")
    install_plugin(site, "broken", "import edge_no_such_dependency\n")
    install_plugin(site, "exiting", "import sys\n\nsys.exit(3)\n")
    install_plugin(site, "future", 'from edge.plugin import hookimpl\n\nEDGE_PLUGIN_API = "1.99"\n')
    install_plugin(site, "newer", 'from edge.plugin import hookimpl, sent_to_mars\n\nEDGE_PLUGIN_API = "1.99"\n')
    install_plugin(site, "unmarked", 'EDGE_PLUGIN_API = "1.0"\n\n\ndef edge_origin_types():\n    return []\n')
    return site


def test_edge_plugins_lists_the_plugins_that_failed_to_load_and_why(broken_site):
    listed = edge("plugins", site=broken_site)
    assert listed.returncode == 1
    assert re.search(r"^local +edge-image-node +\S+ +local$", listed.stdout, re.M), listed.stdout
    table = listed.stdout.partition("\n\n")[0]
    assert not re.search(r"^(broken|exiting|future|newer|unmarked) ", table, re.M), table  # only under FAILED
    # a dependency of its own missing: nothing said of the plugin API
    assert ("broken (edge-broken-origin 2.0.0): cannot import edge_broken_origin: ModuleNotFoundError: "
            "No module named 'edge_no_such_dependency'") in listed.stdout.splitlines()
    assert ("future (edge-future-origin 2.0.0): it needs plugin API 1.99, and this node provides "
            f"{plugin_api.API_VERSION}: upgrade edge-image-node") in listed.stdout
    # a `sys.exit()` as it imports had ended every command, `serve` included
    assert "exiting (edge-exiting-origin 2.0.0): cannot import edge_exiting_origin: SystemExit: 3" in listed.stdout
    # a name of a newer API imported: its import fails before its EDGE_PLUGIN_API is read
    assert ("newer (edge-newer-origin 2.0.0): cannot import edge_newer_origin: ImportError: cannot import name "
            "'sent_to_mars' from 'edge.plugin'") in listed.stdout
    assert (f"the plugin is written for a newer plugin API than this node's {plugin_api.API_VERSION}: upgrade "
            "edge-image-node") in listed.stdout
    # its hook without @hookimpl: it had loaded, providing nothing, without a word
    assert ("unmarked (edge-unmarked-origin 2.0.0): it implements no hook: mark its hook functions with "
            "@edge.plugin.hookimpl") in listed.stdout


#: a plugin module providing the type `pictures`
PICTURES = """
from edge.plugin import Origin, OriginNotFound, hookimpl

EDGE_PLUGIN_API = "1.0"


class Pictures(Origin):
    type_name = "pictures"

    @classmethod
    def from_config(cls, settings, table):
        return cls(settings)

    async def fetch(self, request):
        raise OriginNotFound(request.path)


@hookimpl
def edge_origin_types():
    return [Pictures]
"""


def test_edge_plugins_exits_1_when_two_installed_plugins_provide_one_type(tmp_path):
    install_plugin(tmp_path, "pictures", PICTURES)
    install_plugin(tmp_path, "photos", PICTURES.replace("Pictures(", "Photos(").replace("[Pictures]", "[Photos]"))
    listed = edge("plugins", site=tmp_path)
    assert listed.returncode == 1, listed.stdout + listed.stderr
    assert "FAILED TO LOAD" not in listed.stdout
    twice = listed.stdout[listed.stdout.index("ORIGIN TYPES PROVIDED TWICE"):].splitlines()[1]
    assert twice in ("pictures: photos (edge-photos-origin 2.0.0) and pictures (edge-pictures-origin 2.0.0)",
                     "pictures: pictures (edge-pictures-origin 2.0.0) and photos (edge-photos-origin 2.0.0)")


def test_a_plugin_module_two_entry_points_name_is_loaded_once(tmp_path):
    """A distribution that names its module under two entry points (an alias kept for an old name): the module is
    registered once, not refused as "already registered" at every start and by `edge plugins`' exit status."""
    install_plugin(tmp_path, "pictures", PICTURES)
    points = tmp_path / "edge_pictures_origin-2.0.0.dist-info" / "entry_points.txt"
    points.write_text(points.read_text() + "alias = edge_pictures_origin\n")
    listed = edge("plugins", site=tmp_path)
    assert (listed.returncode, "FAILED TO LOAD" in listed.stdout) == (0, False), listed.stdout + listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines() if "edge-pictures-origin" in line]
    assert rows == [["pictures", "edge-pictures-origin", "2.0.0", "pictures"]], listed.stdout


def test_edge_plugins_json_lists_every_plugin_with_why_it_failed(broken_site):
    listed = edge("plugins", "--json", site=broken_site)
    assert listed.returncode == 1
    plugins = {plugin["name"]: plugin for plugin in json.loads(listed.stdout)}
    assert plugins["local"] == {"name": "local", "module": "edge_builtin_origins.local",
                                "distribution": "edge-image-node", "version": edge_version, "origin_types": ["local"],
                                "error": None}
    assert plugins["broken"] == {"name": "broken", "module": "edge_broken_origin", "distribution": "edge-broken-origin",
                                 "version": "2.0.0", "origin_types": [],
                                 "error": "cannot import edge_broken_origin: ModuleNotFoundError: No module named "
                                          "'edge_no_such_dependency'"}
    assert {"exiting", "future", "newer", "unmarked"} <= {name for name, plugin in plugins.items() if plugin["error"]}


def test_a_broken_plugin_leaves_configs_that_do_not_use_it_working(broken_site, tmp_path):
    config = write_config(tmp_path, LOCAL)
    checked = edge("check-config", "--config", str(config), site=broken_site)
    assert checked.returncode == 0, checked.stderr
    assert re.search(r"WARNING edge\.plugins\[\d+\] plugin broken \(edge-broken-origin 2\.0\.0\) failed to load and is "
                     r"skipped", checked.stderr)

    originals = tmp_path / "originals"
    originals.mkdir()
    (originals / "photo.jpg").write_bytes(photo_image())  # 4000 x 3000
    with running_node(local_config(originals), tmp_path, env={"PYTHONPATH": str(broken_site)}) as node:
        status, headers, body = node.get("/tr:w-300/photo.jpg")
        assert (status, headers["content-type"], image_size(body)) == (200, "image/jpeg", (300, 225))
        assert any("plugin future (edge-future-origin 2.0.0) failed to load" in line for line in node.log)


#: an origin type whose plugin makes an image with libvips at import (`AT_IMPORT` set), or in `from_config` (its
#: `placeholder` key set: a check of the operator's file), which starts libvips' threads in the process
LIBVIPS_ORIGINS = """
import os
import pyvips
from edge.plugin import Origin, OriginNotFound, hookimpl

EDGE_PLUGIN_API = "1.0"
if os.environ.get("AT_IMPORT"):
    PLACEHOLDER = pyvips.Image.black(8, 8).jpegsave_buffer()


class PlaceholderOrigin(Origin):
    type_name = "placeholder"

    @classmethod
    def from_config(cls, settings, table):
        placeholder = table.path("placeholder", None)
        table.finish()
        if placeholder is not None:
            pyvips.Image.new_from_file(str(placeholder)).jpegsave_buffer()
        return cls(settings)

    async def fetch(self, request):
        raise OriginNotFound(request.path)


@hookimpl
def edge_origin_types():
    return [PlaceholderOrigin]
"""
#: what the node answers a process with libvips' threads started before its workers are forked
FORKED_THREADS = (r"this process runs libvips' threads \(\d+ × libvips worker\), which its forked workers would not "
                  r"have and their renders would wait on for ever: a plugin made an image with libvips at import or "
                  r"in an origin's from_config")


def test_a_plugin_that_starts_libvips_at_import_is_named_before_any_worker_hangs(tmp_path):
    """Workers forked after libvips' threads started wait on threads they do not have: every render of the node had
    hung past `render_timeout`, without a word, for a plugin that made a placeholder at import (plugin probe)."""
    site = tmp_path / "site"
    install_plugin(site, "placeholder", LIBVIPS_ORIGINS)
    config = write_config(tmp_path, LOCAL)
    env = {**os.environ, "PYTHONPATH": str(site), "AT_IMPORT": "1"}
    checked = subprocess.run([sys.executable, "-m", "edge", "check-config", "--config", str(config)],
                             capture_output=True, text=True, timeout=120, env=env)
    assert checked.returncode == 1
    assert re.search("edge: edge serve would not start its workers: " + FORKED_THREADS, checked.stderr), checked.stderr
    served = subprocess.run([sys.executable, "-m", "edge", "serve", "--config", str(config), "--port", "0"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert served.returncode == 1
    assert re.search("edge: cannot start workers: " + FORKED_THREADS, served.stderr), served.stderr
    assert edge("check-config", "--config", str(config), site=site).returncode == 0  # nothing made at import


def test_a_reload_whose_from_config_starts_libvips_is_refused_and_the_workers_serve_on(tmp_path):
    site = tmp_path / "site"
    install_plugin(site, "placeholder", LIBVIPS_ORIGINS)
    (tmp_path / "placeholder.png").write_bytes(photo_image(64, 48, "png"))
    originals = tmp_path / "originals"
    originals.mkdir()
    (originals / "photo.jpg").write_bytes(photo_image(640, 480))
    config = write_config(tmp_path, local_config(originals))
    process = NodeProcess(config, env={"PYTHONPATH": str(site)})
    try:
        write_config(tmp_path, local_config(originals, after='[[origins]]\nname = "p"\ntype = "placeholder"\n'
                                                          'placeholder = "placeholder.png"\n'))
        process.process.send_signal(signal.SIGHUP)
        process.wait_for_log("SIGHUP: config not reloaded, the running one is kept: .*edge.toml: reading it started "
                             "threads in the supervisor, restart the node once the plugin is mended: " + FORKED_THREADS)
        status, headers, body = ServingNode(process).get("/tr:w-300/photo.jpg")
        assert (status, image_size(body)) == (200, (300, 225))
    finally:
        process.stop()


def test_a_plugin_whose_import_hangs_is_stopped_and_skipped(tmp_path):
    """A module connecting at import to a host that drops packets had held every `edge` command for ever, silently,
    whatever plugins the config used (plugin probe)."""
    site = tmp_path / "site"
    install_plugin(site, "stuck", "import time\n\nEDGE_PLUGIN_API = '1.0'\ntime.sleep(3600)\n")
    started = time.monotonic()
    checked = edge("check-config", "--config", str(write_config(tmp_path, LOCAL)), site=site)
    assert checked.returncode == 0, checked.stderr
    assert re.search(r"plugin stuck \(edge-stuck-origin 2\.0\.0\) failed to load and is skipped: cannot import "
                     r"edge_stuck_origin: stopped after 30s, at .*/edge_stuck_origin/__init__\.py:4 \(a connection "
                     r"made at import\?\)", checked.stderr), checked.stderr
    assert time.monotonic() - started < 60


def test_a_config_that_uses_a_broken_plugin_names_it(broken_site, tmp_path):
    config = write_config(tmp_path, """
        [[origins]]
        name = "b"
        type = "broken"
        [[endpoints]]
        origins = ["b"]
        """)
    checked = edge("check-config", "--config", str(config), site=broken_site)
    assert checked.returncode == 1
    # the types a plugin installed in the test environment provides (one being developed) may be listed too
    installed = re.search(r"type: unknown origin type 'broken'; installed types: ([a-z0-9_, ]+); ", checked.stderr)
    assert installed and {"cloudinary_backup", "local", "s3", "web"} <= set(installed.group(1).split(", "))
    assert ("; plugins that failed to load: broken (edge-broken-origin 2.0.0): cannot import "
            "edge_broken_origin: ModuleNotFoundError") in checked.stderr


class ShadowingPlugin:
    """A plugin object (as tests register them) that claims the built-in `local` type."""

    EDGE_PLUGIN_API = "1.0"

    @plugin_api.hookimpl
    def edge_origin_types(self):
        from edge_builtin_origins.local import LocalOrigin

        class OtherLocal(LocalOrigin):
            pass

        return [OtherLocal]


class SecondPlugin(ShadowingPlugin):
    """Another plugin object providing a type of its own name."""

    @plugin_api.hookimpl
    def edge_origin_types(self):
        class Pictures(plugin_api.Origin):
            type_name = "pictures"

            @classmethod
            def from_config(cls, settings, table):
                return cls(settings)

            async def fetch(self, request):
                raise plugin_api.OriginNotFound(request.path)

        return [Pictures]


def test_two_plugins_with_one_type_name_are_both_named_where_the_type_is_used():
    plugins = load_plugins(SecondPlugin(), type("ThirdPlugin", (SecondPlugin,), {})())
    with pytest.raises(LookupError, match=r"origin type 'pictures' is provided by two plugins, "
                                          r"SecondPlugin and ThirdPlugin: uninstall one"):
        plugins.origin_type("pictures")
    assert re.search(r"ORIGIN TYPES PROVIDED TWICE .*\npictures: SecondPlugin and ThirdPlugin$", plugins.report(), re.S)


def test_a_plugin_claiming_a_built_in_type_is_skipped_and_the_built_in_serves():
    """The name provided twice, every config using the built-in `local` had been refused: "uninstall one", one of
    the two being the node itself (plugin probe)."""
    plugins = load_plugins(ShadowingPlugin())
    assert plugins.origin_type("local").__module__ == "edge_builtin_origins.local"
    failed, = plugins.failed
    assert failed.error == ("it provides the origin type 'local', which the node has built in: give its type "
                            "another name")


def test_a_plugin_claiming_a_built_in_type_provides_none_of_its_other_types_either():
    class ShadowingAndSecond(ShadowingPlugin):
        @plugin_api.hookimpl
        def edge_origin_types(self):
            return ShadowingPlugin.edge_origin_types(self) + SecondPlugin.edge_origin_types(self)

    plugins = load_plugins(ShadowingAndSecond())
    failed, = plugins.failed
    assert failed.origin_types == ("local", "pictures")
    assert "pictures" not in plugins.type_names()
    with pytest.raises(LookupError, match=r"^unknown origin type 'pictures'; installed types: (?!.*pictures).*; "
                                          r"plugins that failed to load: ShadowingAndSecond: it provides the origin "
                                          r"type 'local'"):
        plugins.origin_type("pictures")


def test_a_class_a_plugin_lists_twice_is_provided_once():
    class Repeating(SecondPlugin):
        @plugin_api.hookimpl
        def edge_origin_types(self):
            return SecondPlugin.edge_origin_types(self) * 2

    plugins = load_plugins(Repeating())
    assert not plugins.failed and not plugins.conflicts
    assert plugins.origin_type("pictures").type_name == "pictures"


def test_edge_plugins_lists_the_plugins_by_distribution_then_name():
    loaded = load_plugins(type("ZPlugin", (SecondPlugin,), {})(), ShadowingPlugin()).loaded
    assert [p.name for p in loaded[:2]] == ["ShadowingPlugin", "ZPlugin"]  # passed in: no distribution
    assert [(p.distribution or "", p.name) for p in loaded] == sorted((p.distribution or "", p.name) for p in loaded)
    assert [p.name for p in loaded if p.distribution == "edge-image-node"] == ["cloudinary_backup", "local", "s3",
                                                                               "web"]


def test_an_origin_type_whose_fetch_is_not_a_coroutine_function_is_refused():
    """A `def fetch` (forgot `async`) loaded, then failed every request and fell through to the next origin."""
    class Forgetful(ShadowingPlugin):
        @plugin_api.hookimpl
        def edge_origin_types(self):
            class Sync(plugin_api.Origin):
                type_name = "sync"

                @classmethod
                def from_config(cls, settings, table):
                    return cls(settings)

                def fetch(self, request):
                    raise plugin_api.OriginNotFound(request.path)

            return [Sync]

    failed, = load_plugins(Forgetful()).failed
    assert failed.error == "Sync.fetch is not a coroutine function: write `async def fetch`"


@pytest.mark.parametrize("method", ["open", "close"])
def test_an_origin_type_whose_open_or_close_is_not_a_coroutine_function_is_refused(method):
    """A `def open` had loaded, and every worker failed at its start awaiting what it returned."""
    class Forgetful(ShadowingPlugin):
        @plugin_api.hookimpl
        def edge_origin_types(self):
            class Sync(plugin_api.Origin):
                type_name = "sync"

                async def fetch(self, request):
                    raise plugin_api.OriginNotFound(request.path)

            setattr(Sync, method, lambda self: None)
            return [Sync]

    failed, = load_plugins(Forgetful()).failed
    assert failed.error == f"Sync.{method} is not a coroutine function: write `async def {method}`"


def raise_boom():
    raise RuntimeError("boom")


@pytest.mark.parametrize("hook, error", [
    (raise_boom, "edge_origin_types() raised RuntimeError: boom"),
    (lambda: [dict], "edge_origin_types() returned <class 'dict'>, not a subclass of edge.plugin.Origin"),
    (lambda: dict, "edge_origin_types() returned <class 'dict'>, not a list of edge.plugin.Origin subclasses"),
    (lambda: "local", "edge_origin_types() returned 'local', not a list of edge.plugin.Origin subclasses"),
    (lambda: (_ for _ in [dict]), "edge_origin_types() returned <class 'dict'>, not a subclass of edge.plugin.Origin"),
    # a name no `type = "…"` would be written with (plugin probe)
    (lambda: [type("Spaced", (plugin_api.Origin,), {"type_name": "Has Space"})],
     "Spaced.type_name 'Has Space' is not lowercase letters, digits and underscores, starting with a letter"),
    (lambda: [type("Long", (plugin_api.Origin,), {"type_name": "a" * 41})],
     f"Long.type_name '{'a' * 41}' is not lowercase letters, digits and underscores, starting with a letter"),
    (lambda: [type("Unnamed", (plugin_api.Origin,), {"type_name": None})],
     "edge_origin_types() returned Unnamed, which has no type_name"),
])
def test_a_plugin_whose_hook_fails_is_skipped(hook, error):
    class Failing:
        @plugin_api.hookimpl
        def edge_origin_types(self):
            return hook()

    plugins = load_plugins(Failing())
    (failed,) = plugins.failed
    assert (failed.name, failed.error) == ("Failing", error)
    assert {"cloudinary_backup", "local", "s3", "web"} <= set(plugins.type_names())


@pytest.mark.parametrize("declared, problem", [
    ("1.0", None),
    ("1.1", None),
    ("1.2", None),
    ("1.3", None),
    ("1.4", None),
    ("1.5", None),
    ("1.6", "it needs plugin API 1.6, and this node provides 1.5"),
    ("1.99", "it needs plugin API 1.99"),
    ("2.0", "it needs plugin API 2.0"),
    ("0.9", "it is written for plugin API 0.9, and this node provides 1.5, which is incompatible"),
    (None, 'it must declare the plugin API it is written for, as EDGE_PLUGIN_API = "1.0" (the lowest version whose '
           'API it uses; this node provides 1.5; got None)'),
    (1.0, 'it must declare the plugin API it is written for, as EDGE_PLUGIN_API = "1.0" (the lowest version whose '
          'API it uses; this node provides 1.5; got 1.0, a number: quote it)'),
    ("\uff11.0", "it must declare the plugin API it is written for"),  # a full-width digit
    (True, 'it must declare the plugin API it is written for, as EDGE_PLUGIN_API = "1.0" (the lowest version whose '
           'API it uses; this node provides 1.5; got True)'),  # a bool is no number to quote
])
def test_the_declared_plugin_api_is_checked(declared, problem):
    assert plugin_api.API_VERSION == "1.5"  # the cases below are written for it
    found = api_problem(declared)
    assert found == problem if problem is None else found.startswith(problem)


async def test_in_thread_runs_a_blocking_call_off_the_event_loop():
    result, thread = await plugin_api.in_thread(lambda a, b: (a + b, threading.get_ident()), 2, 3)
    assert result == 5 and thread != threading.get_ident()
    with pytest.raises(plugin_api.OriginNotFound):
        await plugin_api.in_thread(_not_found, "missing.jpg")


def _not_found(path: str) -> None:
    raise plugin_api.OriginNotFound(path)


def test_http_date_reads_a_naive_datetime_as_utc_whatever_the_machine_timezone(monkeypatch):
    """A naive datetime is UTC, as documented ("an aware or UTC datetime"): on a machine set to Tokyo it must not
    shift by nine hours (the node would send back, in If-Modified-Since, another date than the storage's)."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        naive = datetime.datetime(2015, 10, 21, 7, 28)
        assert plugin_api.http_date(naive) == "Wed, 21 Oct 2015 07:28:00 GMT"
        paris = datetime.timezone(datetime.timedelta(hours=2))
        assert plugin_api.http_date(naive.replace(tzinfo=paris)) == "Wed, 21 Oct 2015 05:28:00 GMT"
        assert plugin_api.http_date(None) is None
    finally:
        monkeypatch.undo()
        time.tzset()


def test_the_built_in_types_install_as_edge_builtin_origins(tmp_path):
    """A wheel of the node (what `pip install .` installs) holds every package, the built-in origins
    under a name no other distribution uses, the plugin template, and no top-level `plugins`."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md", "edge", "plugins"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                            if (ROOT / name).is_dir() else {}))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path / "wheel"), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {str(init.parent.relative_to(ROOT)) for init in (ROOT / "edge").rglob("__init__.py")}
    assert {f"{package}/__init__.py" for package in packages} <= names
    assert {f"edge_builtin_origins/{path.name}" for path in (ROOT / "plugins").glob("*.py")} <= names
    assert {f"edge/{path.relative_to(ROOT / 'edge')}" for path in (ROOT / "edge" / "plugin_template").rglob("*")
            if path.is_file()} <= names
    assert not any(name.startswith("plugins/") for name in names)
    entry_points = next(zipfile.Path(wheel, name).read_text() for name in names if name.endswith("entry_points.txt"))
    assert "s3 = edge_builtin_origins.s3" in entry_points


def test_the_public_api_is_what_the_docs_list():
    assert set(plugin_api.__all__) == {
        "API_VERSION", "CHUNK_BYTES", "ConfigTable", "NotModified", "Origin", "OriginFailure", "OriginNotFound",
        "OriginRequest",
        "OriginSettings", "Original", "Secret", "SourceTooLarge", "Validators", "check_announced_size",
        "hookimpl", "http_date", "in_thread", "read_announced", "read_limited",
        "IMAGE_EXTENSIONS", "USER_AGENT", "without_userinfo",  # 1.3
        "host_name",  # 1.4
        "fetch_memory", "FetchMemoryExhausted",  # 1.5
    }
    assert all(hasattr(plugin_api, name) for name in plugin_api.__all__)


def test_what_the_docs_list_of_edge_testing_is_there():
    """Section 6's table of `edge.testing`: every function and method it names exists, with the
    arguments it shows, those after a `*` keyword-only (an example's helpers of the Azure tests' own had read as
    part of it; `running_node`'s `env` had been shown as positional, a TypeError so given: plugin probe)."""
    import inspect

    from edge import testing
    doc = (ROOT / "docs" / "writing-an-origin-plugin.md").read_text()
    table = doc[doc.index("`edge.testing` is installed with the node"):doc.index("Test against a real instance")]
    call = r"`(?:node\.)?(\w+)\(((?:[^()]|\(\))*)\)`"  # `args=()` included
    named = re.findall(r"^\| " + call, table, re.M) + re.findall(r", " + call + r" \|", table)
    assert {name for name, _ in named} >= {"running_node", "get", "metrics", "solid_image", "centre_colour",
                                          "wait_for_log", "write_config"}
    for name, arguments in named:
        function = getattr(testing, name, None) or getattr(testing.ServingNode, name, None)
        assert function is not None, name
        parameters = inspect.signature(function).parameters
        shown = [part.split("=")[0].strip() for part in arguments.split(",")]
        for argument in filter(None, shown):
            if argument != "*":
                keyword_only = "*" in shown[:shown.index(argument)]
                assert argument in parameters, (name, argument)
                assert (parameters[argument].kind is inspect.Parameter.KEYWORD_ONLY) == keyword_only, (name, argument)


def test_the_guide_says_which_secrets_are_masked():
    """Those of `REDACTED_MIN_CHARS` characters or more: the guide had said every one, and a 5-character token
    was logged as it is (plugin probe)."""
    doc = " ".join((ROOT / "docs" / "writing-an-origin-plugin.md").read_text().split())
    said = re.findall(r"every `Secret`.{0,40}in (?:its output|what it logs)", doc)
    assert len(said) == 2 and all("of six characters or longer" in claim for claim in said), said
    assert REDACTED_MIN_CHARS == 6  # the guide's "six"


@pytest.mark.parametrize("module", sorted((ROOT / "plugins").glob("*.py")), ids=lambda path: path.name)
def test_the_built_in_types_import_nothing_of_the_node_but_its_plugin_api(module):
    """The built-ins are the examples a plugin author copies: what they import of `edge` is what a
    plugin may (docs/writing-an-origin-plugin.md)."""
    imported = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module)
    assert {name for name in imported if name == "edge" or name.startswith("edge.")} <= {"edge.plugin"}


def test_the_walk_through_quotes_the_azure_plugin():
    """Every Python and TOML excerpt of docs/writing-an-origin-plugin.md is a verbatim part of the Azure
    plugin (its code, its module docstring's config, its pyproject or its tests), which CI installs and
    tests against Azurite: the excerpts are code that runs."""
    doc = (ROOT / "docs" / "writing-an-origin-plugin.md").read_text()
    plugin = ROOT / "contrib" / "edge-azure-blob"
    sources = "\n".join(path.read_text() for path in (
        plugin / "edge_azure_blob" / "__init__.py", plugin / "pyproject.toml", plugin / "tests" / "test_azure_blob.py"))
    excerpts = re.findall(r"```(?:python|toml)\n(.*?)```", doc, re.S)
    assert len(excerpts) >= 10
    for excerpt in excerpts:
        assert excerpt in sources or textwrap.indent(excerpt, "    ") in sources, excerpt
    for name in re.findall(r"`edge\.plugin\.(\w+)`", doc):
        assert name in plugin_api.__all__, name


class RecordingPlugin:
    """`type = "recording"`: has nothing, and remembers every `OriginRequest` it was given."""

    EDGE_PLUGIN_API = "1.0"

    def __init__(self):
        self.requests: list[plugin_api.OriginRequest] = []
        plugin = self

        class RecordingOrigin(plugin_api.Origin):
            type_name = "recording"

            @classmethod
            def from_config(cls, settings, table):
                origin = cls(settings)
                origin.host_taken = table.bool("takes_host", False)
                table.finish()
                return origin

            @property
            def takes_request_host(self) -> bool:
                return self.host_taken

            async def fetch(self, request):
                plugin.requests.append(request)
                raise plugin_api.OriginNotFound(request.path)

        self.origin_type = RecordingOrigin

    @plugin_api.hookimpl
    def edge_origin_types(self):
        return [self.origin_type]


@pytest.mark.parametrize("takes_host, host_seen", [(False, None), (True, "shop.example")])
async def test_the_client_host_reaches_only_an_origin_that_takes_it(node_factory, tmp_path, takes_host, host_seen):
    plugin = RecordingPlugin()
    node = await node_factory(write_config(tmp_path, local_config(before=f"""
        [[origins]]
        name = "recording"
        type = "recording"
        takes_host = {str(takes_host).lower()}
        """).replace('origins = ["samples"]', 'origins = ["recording", "samples"]')), plugin)
    response = await node.fetch("/tr:w-40/coffee.jpg", headers={"Host": "shop.example"})
    assert response.code == 200
    (request,) = plugin.requests
    assert (request.path, request.host, request.validators) == ("coffee.jpg", host_seen, None)
    assert request.max_bytes == node.config.limits.max_source_bytes


async def test_an_origin_that_does_not_take_the_host_gets_none_beside_one_that_does(node_factory, tmp_path):
    """The endpoint is keyed by the Host (an origin of it takes it), yet the origin that does not take it gets
    no Host: its answer is one for every Host (a mutation giving the Host to any origin whose `takes_host`
    says yes, `takes_request_host` unasked, survived)."""
    plugin = RecordingPlugin()
    node = await node_factory(write_config(tmp_path, local_config(before="""
        [[origins]]
        name = "hostless"
        type = "recording"

        [[origins]]
        name = "hosted"
        type = "recording"
        takes_host = true
        """).replace('origins = ["samples"]', 'origins = ["hostless", "hosted", "samples"]')), plugin)
    response = await node.fetch("/tr:w-40/coffee.jpg", headers={"Host": "shop.example"})
    assert response.code == 200
    assert [request.host for request in plugin.requests] == [None, "shop.example"]


class UnversionedPlugin:
    """`type = "unversioned"`: the photo, with neither an etag nor a last_modified; remembers each request."""

    EDGE_PLUGIN_API = "1.0"

    def __init__(self):
        self.requests: list[plugin_api.OriginRequest] = []
        plugin = self

        class UnversionedOrigin(plugin_api.Origin):
            type_name = "unversioned"

            @classmethod
            def from_config(cls, settings, table):
                table.finish()
                return cls(settings)

            async def fetch(self, request):
                plugin.requests.append(request)
                return plugin_api.Original(PHOTO)

        self.origin_type = UnversionedOrigin

    @plugin_api.hookimpl
    def edge_origin_types(self):
        return [self.origin_type]


PHOTO = photo_image(320, 240)


async def test_an_original_held_without_validators_is_fetched_again_with_none(node_factory, tmp_path):
    """The docs: `request.validators` is None, or what the origin returned. An original returned with
    neither an etag nor a last_modified had been revalidated with `Validators(None, None)`: a plugin
    that asks conditionally when it is not None sent `If-None-Match: None`."""
    plugin = UnversionedPlugin()
    node = await node_factory(write_config(tmp_path, """
        [cache]
        dir = "cache"
        original_ttl = "0s"

        [[origins]]
        name = "plain"
        type = "unversioned"

        [[endpoints]]
        id = ""
        origins = ["plain"]
        """), plugin)
    for width in range(20, 60):  # until the original is stored and then revalidated (the store is asynchronous)
        assert (await node.fetch(f"/tr:w-{width}/a.jpg")).code == 200
        if len(plugin.requests) >= 3:
            break
        await asyncio.sleep(0.05)
    assert len(plugin.requests) >= 3
    assert [request.validators for request in plugin.requests] == [None] * len(plugin.requests)


def seconds_alive(pid: int) -> float:
    """How long process `pid` has run (Linux: /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        started = int(stat.read().rpartition(")")[2].split()[19]) / os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime") as uptime:
        return float(uptime.read().split()[0]) - started


def test_a_worker_replacing_a_dead_one_serves_without_an_origin_that_does_not_open(tmp_path):
    """A plugin's storage away as a worker died (the OOM killer): its replacement could not open that origin,
    exited, and so did each next one, ten in 0.25 s, until the supervisor stopped the whole node, every
    other origin's endpoint with it. Now the replacement serves without it, tries it again, and fetches
    from it once it opens."""
    site, storage = tmp_path / "site", tmp_path / "storage"
    site.mkdir()
    storage.mkdir()
    install_plugin(site, "marked", MARKED_ORIGINS)
    online = storage / "online"  # its storage answers while this is there
    online.touch()
    (storage / "photo.jpg").write_bytes(photo_image())  # 4000 x 3000
    for number in range(60):  # each fetched once: what is asked of the origin, not of the originals tier
        (storage / f"{number}.jpg").write_bytes(photo_image(400, 300))
    config = write_config(tmp_path, local_config(
        before="[server]\nworkers = 2\n",
        after=f'[[origins]]\nname = "stored"\ntype = "checking"\nmarker = "{online}"\n\n'
              f'[[endpoints]]\nid = "stored"\norigins = ["stored"]\n'))
    process = NodeProcess(config, env={"PYTHONPATH": str(site)})
    try:
        node = ServingNode(process)
        assert node.get("/stored/tr:w-300/photo.jpg")[0] == 200
        online.unlink()
        victim = process.worker_pids()[0]
        # one that has served a while, its heartbeats read since it said it serves: replaced as one that served
        polled(lambda: seconds_alive(victim) > 3 * HEARTBEAT_SECONDS, "the worker serving a few heartbeats", 10)
        os.kill(victim, signal.SIGKILL)
        process.wait_for_log(r"origin 'stored' \(type 'checking'\) did not open: ConnectionError: .* is offline: "
                             r"this worker replaces one that exited, so it serves without it")
        answers = [node.get(f"/tr:w-{width}/coffee.jpg") for width in range(100, 140)]
        assert {(status, image_size(body)[0]) for status, _, body in answers} == {(200, width) for width in
                                                                               range(100, 140)}
        # the old worker fetches from it still (the storage answers); the new one says why it cannot
        answers = [node.get(f"/stored/tr:w-100/{number}.jpg") for number in range(40)]
        assert {(status, headers.get("X-Edge-Error")) for status, headers, _ in answers} == {
            (200, None), (502, "stored: not_open")}
        online.touch()
        process.wait_for_log(r"origin 'stored' opened: fetched from again")
        answers = [node.get(f"/stored/tr:w-100/{number}.jpg") for number in range(40, 60)]
        assert {(status, image_size(body)) for status, _, body in answers} == {(200, (100, 75))}
        assert node.get("/stored/tr:w-400/photo.jpg")[0] == 200
        assert process.process.poll() is None
    finally:
        assert process.stop() == 0
    # at the node's start, such an origin stops it at once: its workers never served (it had been started again ten
    # times, its port bound and answering nothing, then "workers keep dying")
    online.unlink()
    started = subprocess.run([sys.executable, "-m", "edge", "serve", "--port", "0", "--config", str(config)],
                             capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(site)})
    assert started.returncode == 1 and "could not start (above): the node does not start" in started.stderr
    assert started.stderr.count("cannot start: origin 'stored' (type 'checking') did not open: ConnectionError") <= 2
    assert "serves without it" not in started.stderr and "workers keep dying" not in started.stderr
