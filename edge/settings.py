"""Reading one TOML table into typed values, with errors that name the file, table and key.

Built-in code and third-party origin plugins read their tables through `ConfigTable`, so every config
error reads the same way and secrets are wrapped in `Secret` the moment they are read.
"""

from __future__ import annotations

import difflib
import hmac
import json
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import SplitResult, quote, quote_plus, urlsplit

from .errors import ConfigError

_REQUIRED: Any = object()
#: a host name as the config takes it: DNS labels, or a bracketed IPv6 literal; no scheme, port or path
HOST_NAME = r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*|\[[0-9a-f:.]+\])"
_HOST = re.compile(HOST_NAME)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
#: how like a known key an unknown one is to be called its typo (`difflib` ratio: `rooot` 0.89, `prot` for port 0.75)
TYPO_SIMILARITY = 0.7
_WHOLE_BYTES = 'a whole number of bytes or a size such as "500MB", "2GB" or "1GiB"'
_SIZE_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


#: secrets shorter than this are not searched for in what is logged (`redact`): too likely ordinary text
REDACTED_MIN_CHARS = 6


class Secret:
    """A credential from the config. Prints as `****`; only `reveal()` gives the value (`is_bearer_of` compares it
    with what a client sent). Every one made is remembered, so that `redact` can mask it wherever a message
    quotes it, as it is or escaped (`_written_as`)."""

    __slots__ = ("_value",)
    _every: ClassVar[set[str]] = set()

    def __init__(self, value: str):
        self._value = value
        if len(value) >= REDACTED_MIN_CHARS:
            Secret._every.update(_written_as(value))

    def reveal(self) -> str:
        return self._value

    def is_bearer_of(self, authorization: str | None) -> bool:
        """Whether an `Authorization` header carries this secret as a bearer token (compared in constant time)."""
        scheme, _, given = (authorization or "").partition(" ")
        given = given.strip()
        return scheme.lower() == "bearer" and bool(given) and hmac.compare_digest(given.encode(), self._value.encode())

    def __repr__(self) -> str:
        return "Secret('****')"

    def __str__(self) -> str:
        return "****"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _written_as(value: str) -> set[str]:
    """The ways a log line may write `value`: as it is, in a Python repr of it or of its UTF-8 bytes
    (a traceback's locals or an exception's arguments), percent-encoded (a URL; either case of hex
    digits); and each of those escaped in JSON (the JSON log format escapes quotes, backslashes and
    non-ASCII)."""
    encoded = {quote(value, safe=""), quote(value), quote_plus(value)}
    forms = {value, repr(value)[1:-1], repr(value.encode())[2:-1], *encoded,
             *(re.sub("%[0-9A-F]{2}", lambda escape: escape[0].lower(), form) for form in encoded)}
    return forms | {json.dumps(form)[1:-1] for form in forms}


def redact(text: str) -> str:
    """`text` with every credential of the config masked: a plugin's exception message, or a library's
    traceback, may quote one."""
    for secret in sorted(Secret._every, key=len, reverse=True):  # one that holds another first
        if secret in text:
            text = text.replace(secret, "****")
    return text


def parse_size(text: str | int) -> int:
    """`"2GB"` → 2_000_000_000; `"1GiB"` → 2**30; plain integers are bytes."""
    if isinstance(text, float):  # `output_size = 1.5` (a TOML float) had been read as 1 byte; `2e9` is whole
        if not text.is_integer():
            raise ValueError(_WHOLE_BYTES)
        text = int(text)
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError("a size of 0 or more")
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError('a size such as "500MB", "2GB" or "1GiB"')
    number, unit = match.groups()
    if (unit or "b").lower() == "b" and not float(number).is_integer():  # `"1.5"`: no fraction of a byte either
        raise ValueError(_WHOLE_BYTES)
    return int(float(number) * _SIZE_UNITS[(unit or "b").lower()])


def parse_duration(text: str | int | float) -> float:
    """`"60s"`, `"5m"`, `"1h"`, `"1d"` → seconds; plain numbers are seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise ValueError("a duration of 0 or more")
        return float(text)
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError('a duration such as "60s", "5m", "1h" or "1d"')
    number, unit = match.groups()
    return float(number) * _DURATION_UNITS[unit or "s"]


def host_name(host: str) -> str:
    """`Img.Example.com:8080` → `img.example.com`; `[::1]:8080` and `[::1]` → `[::1]`; `img.example.com.`
    (the fully qualified form, the same host) → `img.example.com`."""
    if not host.endswith("]"):
        host = host.rpartition(":")[0] or host
    return host.removesuffix(".").lower()


def listen_host(written: str) -> str:
    """`[server] host` or `--host` as the socket takes it: an IPv6 address written bracketed, as in a
    URL (`[::1]`), unbracketed (the brackets had been looked up as a host name, and failed). An empty one is a
    ValueError: the socket takes it for every interface, which a script's unset variable must not open."""
    host = written[1:-1] if written.startswith("[") and written.endswith("]") else written
    if not host.strip():
        raise ValueError("an empty host would listen on every interface: write 0.0.0.0 (or ::) for that")
    return host


def host_in_url(host: str) -> str:
    """A listening address as a URL writes it: an IPv6 address bracketed."""
    return f"[{host}]" if ":" in host else host


class ConfigTable:
    """A TOML table being validated. Call the typed getters, then `finish()` to reject unknown keys."""

    def __init__(self, data: Mapping[str, Any], *, file: str, table: str, base_dir: Path,
                 environ: Mapping[str, str] | None = None, references: dict[str, str] | None = None):
        self._data = dict(data)
        self.file = file
        self.table = table
        self.base_dir = base_dir
        self._environ = os.environ if environ is None else environ
        self._read: set[str] = set()
        #: the values `${NAME}` stood for in the file's keys so far, as a message may write them → `${NAME}`
        #: (one for the file's tables: an error may quote another table's value, or a table's name)
        self._references: dict[str, str] = {} if references is None else references

    # -- errors -----------------------------------------------------------------------------------
    def error(self, key: str | None, message: str) -> ConfigError:
        where = " ".join(filter(None, (f"[{self.table}]" if self.table else "", key)))
        return ConfigError(redact(self.masked(f"{self.file}: {where}: {message}")))

    def masked(self, text: str) -> str:
        """`text` with each value that came from the environment written as its `${NAME}`: a secret given to
        a key that takes none (`endpoint_url = "${SECRET}"`) was quoted in errors, at start and by check-config."""
        for written in sorted(self._references, key=len, reverse=True):
            text = text.replace(written, self._references[written])
        return text

    def stands_in(self, key: str, index: int | None = None) -> bool:
        """Whether `key` (its item `index`, of a list) is written `${NAME}` and the environment does not give it
        (`check-config --no-env`): its value is a placeholder, not the one to check."""
        written = self._data.get(key) if index is None else self._data[key][index]
        match = _ENV_REF.fullmatch(written) if isinstance(written, str) else None
        return match is not None and self._environ.get(match.group(1)) is None

    def finish(self) -> None:
        unknown = sorted(set(self._data) - self._read)
        if unknown:
            meant = difflib.get_close_matches(unknown[0], sorted(self._read), n=1, cutoff=TYPO_SIMILARITY)
            raise self.error(unknown[0], "unknown key" + "".join(f" (did you mean `{key}`?)" for key in meant))

    # -- raw access -------------------------------------------------------------------------------
    def _raw(self, key: str, default: Any) -> Any:
        self._read.add(key)
        if key not in self._data:
            if default is _REQUIRED:
                # a misspelt key is the error to name: `rooot = "img"` had been reported as `root` missing
                typos = difflib.get_close_matches(key, sorted(set(self._data) - self._read), n=1,
                                                  cutoff=TYPO_SIMILARITY)
                if typos:
                    raise self.error(typos[0], f"unknown key (did you mean `{key}`?)")
                raise self.error(key, "missing required key")
            return default
        return self._expand(key, self._data[key])

    def _expand(self, key: str, value: Any) -> Any:
        if isinstance(value, str):
            def substitute(match: re.Match[str]) -> str:
                name = match.group(1)
                if name not in self._environ:
                    raise self.error(key, f"environment variable {name} is not set")
                value = self._environ[name]
                if len(value) >= REDACTED_MIN_CHARS:
                    self._references.update(dict.fromkeys(_written_as(value), match.group(0)))
                return value
            return _ENV_REF.sub(substitute, value)
        if isinstance(value, list):
            return [self._expand(key, item) for item in value]
        return value

    # -- typed getters ----------------------------------------------------------------------------
    def str(self, key: str, default: Any = _REQUIRED, *, choices: tuple[str, ...] | None = None) -> Any:
        value = self._raw(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_type_name(value)}")
        if choices is not None and value not in choices:
            raise self.error(key, f"expected one of {', '.join(repr(c) for c in choices)}, got {value!r}")
        return value

    def int(self, key: str, default: Any = _REQUIRED, *, min: int | None = None,
            max: int | None = None) -> Any:
        value = self._raw(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {_type_name(value)}")
        if (min is not None and value < min) or (max is not None and value > max):
            bounds = f"at least {min}" if max is None else f"at most {max}" if min is None else f"from {min} to {max}"
            raise self.error(key, f"expected an integer {bounds}, got {value}")
        return value

    def number(self, key: str, default: Any = _REQUIRED, *, min: float | None = None) -> Any:
        value = self._raw(key, default)
        if value is default and default is not _REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"expected a number, got {_type_name(value)}")
        if min is not None and value < min:
            raise self.error(key, f"expected a number of at least {min}, got {value}")
        return float(value)

    def bool(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self._raw(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_type_name(value)}")
        return value

    def size(self, key: str, default: Any = _REQUIRED) -> int:
        return self._parsed(key, default, parse_size)

    def duration(self, key: str, default: Any = _REQUIRED) -> float:
        return self._parsed(key, default, parse_duration)

    def _parsed(self, key: str, default: Any, parse: Any) -> Any:
        value = self._raw(key, default)
        try:
            return parse(value)
        except ValueError as exc:
            raise self.error(key, f"expected {exc}, got {value!r}") from None

    def path(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self.str(key, default)
        if value is None or isinstance(value, Path):
            return value
        if not value.strip():  # a script's unset variable (`dir = "${CACHE_DIR}"`): never the config's own folder
            raise self.error(key, "an empty path (leave the key out for its default)")
        if "\x00" in value:  # no file name holds one: the OS refuses it (`ValueError`, a traceback)
            raise self.error(key, f"{value!r} holds a NUL character, which no path can")
        try:
            expanded = Path(value).expanduser()
        except RuntimeError:  # `~` for a user without a home folder (HOME unset, no passwd entry)
            raise self.error(key, f"{value!r} starts with ~, but this user has no home folder") from None
        try:
            return (self.base_dir / expanded).resolve()
        except (RuntimeError, OSError) as exc:  # a symlink loop, a folder that cannot be read
            raise self.error(key, f"{value!r} cannot be resolved: {exc}") from None

    def url(self, key: str, default: Any = _REQUIRED) -> tuple[str, SplitResult] | tuple[None, None]:
        """`key` as written and split (`urlsplit`, its port read): one that cannot be split (an IPv6
        host without its `]`, a port that is not a number from 0 to 65535) is an error naming the key,
        not the `ValueError` the caller would meet. Any credentials in it are left out of the message."""
        value = self.str(key, default)
        if value is None:
            return None, None
        try:
            parts = split_url(value)
        except ValueError as exc:
            raise self.error(key, f"expected a URL, got {without_userinfo(value)!r} ({exc})") from None
        return value, parts

    def secret(self, key: str, default: Any = None) -> Secret | None:
        value = self.str(key, default)
        return None if value is None else Secret(value)

    def str_list(self, key: str, default: Any = _REQUIRED) -> tuple[str, ...]:
        value = self._raw(key, default)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "expected a list of strings")
        return tuple(value)

    def host_names(self, key: str, default: Any = _REQUIRED) -> tuple[str, ...]:
        """A list of host names, lower-cased; one that could never match a `Host` header is an error."""
        written = self.str_list(key, default)
        for host in written:
            if not _HOST.fullmatch(host.lower().removesuffix(".")):
                raise self.error(key, f"{host!r} is not a host name: write it without a scheme, port or path "
                                      "(e.g. \"img.example.com\")")
        # the fully qualified form (`img.example.com.`) is the same host, as `host_name` reads a `Host` header
        return tuple(host.lower().removesuffix(".") for host in written)

    def bool_or_host_names(self, key: str, default: Any = _REQUIRED) -> bool | tuple[str, ...]:
        """true, false, or a list of host names (`host_names`)."""
        value = self._raw(key, default)
        if isinstance(value, bool):
            return value
        if not isinstance(value, list):
            raise self.error(key, f"expected true, false or a list of host names, got {_type_name(value)}")
        return self.host_names(key)

    def str_map(self, key: str, default: Any = _REQUIRED) -> dict[str, str]:
        value = self._raw(key, default)
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise self.error(key, "expected a table of strings")
        return {k: self._expand(key, v) for k, v in value.items()}

    def keys(self) -> list[str]:
        return list(self._data)

    def tables(self, key: str) -> list[ConfigTable]:
        """An array of tables (`[[key]]`), each as a `ConfigTable` named `key[i]`."""
        value = self._raw(key, [])
        if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
            raise self.error(key, f"expected [[{key}]] tables")
        return [self._child(item, f"{key}[{i}]") for i, item in enumerate(value)]

    def _child(self, data: Mapping[str, Any], name: str) -> ConfigTable:
        return ConfigTable(data, file=self.file, table=name, base_dir=self.base_dir, environ=self._environ,
                           references=self._references)

    def subtable(self, key: str) -> ConfigTable:
        value = self._raw(key, {})
        if not isinstance(value, Mapping):
            raise self.error(key, f"expected a table, got {_type_name(value)}")
        return self._child(value, key if self.table == "" else f"{self.table}.{key}")


def regular_file_bytes(path: Path, limit: int) -> bytes:
    """A file named in a config, read at most `limit` bytes: ValueError unless it is a regular file within it.
    A FIFO or a device had held the supervisor (at start, and in a reload, where it stopped replacing workers
    and heeding SIGTERM) until a writer came, and `/dev/zero` was read until memory ran out."""
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ValueError("not a regular file")
        body = handle.read(limit + 1)
    if len(body) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return body


def _type_name(value: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def split_url(url: str) -> SplitResult:
    """`urlsplit(url)`, its port read: `ValueError` for an IPv6 host without its `]` (from `urlsplit`)
    and for a port that is not a number from 0 to 65535 (from `.port`, which callers would meet later)."""
    parts = urlsplit(url)
    parts.port  # noqa: B018 - raises for a port that is not a number in range
    return parts


def is_web_url(text: str) -> bool:
    """Whether `text` is an http(s) URL with a host that `split_url` takes, and no query or fragment (a path is
    added after it): what the commands' `--base-url` must be."""
    try:
        parts = split_url(text)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not ("?" in text or "#" in text)


def without_userinfo(url: str) -> str:
    """`url` with any `user:password@` before its host replaced by `…@`, and any query or fragment by `?…`
    (where API keys go: `?apikey=` had been quoted as written): for a message quoting a URL that may hold
    a secret."""
    scheme, separator, rest = url.partition("://")
    if separator:  # the user information first: a `?` or `#` in a password starts no query
        authority, slash, path = rest.partition("/")
        if "@" in authority:
            url = f"{scheme}://…@{authority.rpartition('@')[2]}{slash}{path}"
    elif "@" in url:
        url = "…@" + url.rpartition("@")[2]
    url, query_mark, _ = url.replace("#", "?", 1).partition("?")
    return url + "?…" if query_mark else url
