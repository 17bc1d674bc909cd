"""Reading what a user wrote as YAML, within fixed bounds of time and memory.

Scenario files, sweep files and ``--set`` values all come through here, so a
hostile or broken input is refused before anything is expanded, converted or
imported:

* a file must be a regular file of at most :data:`MAX_BYTES` (1 MiB), UTF-8
  text without NUL bytes (a PNG renamed ``.yaml`` is "binary", not a traceback);
* the YAML event stream is scanned first (libyaml when installed, iterative
  either way) and refused on any anchor or alias (``&a`` / ``*a``: the
  "billion laughs" bomb expands nine nodes into 9⁹), on nesting deeper than
  :data:`MAX_DEPTH`, or on more than :data:`MAX_NODES` values, so a 1 MiB file
  of half a million list items costs a scan, not a five-second construction;
* only JSON data comes out: dates stay strings, integers with more digits than
  Python converts are an error, duplicate keys are an error (YAML's "last one
  wins" would silently drop a setting), and tagged values such as ``!!binary``
  or ``!!set`` are refused.

Every refusal is a :class:`~simulation.errors.ScenarioError` naming the file,
where in it (line and column, or the field path) and why.
"""

from __future__ import annotations

import codecs
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import yaml
from yaml.constructor import ConstructorError

from simulation.errors import Problem, ScenarioError

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "parse_value",
    "parse_yaml",
    "read_mapping",
    "read_text",
]

MAX_BYTES = 1 << 20
"""Largest file (or ``--set`` value) read, in bytes: scenarios are a few KB."""
MAX_DEPTH = 32
"""Deepest nesting of mappings and lists (a scenario needs about 7)."""
MAX_NODES = 20_000
"""Most YAML values (scalars, lists and mappings) in one document."""

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_PLAIN = (str, int, float, bool, type(None))
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc]
    """Safe YAML without dates, with duplicate keys and oversized integers refused."""

    yaml_implicit_resolvers: ClassVar[dict[Any, list[tuple[str, Any]]]] = {
        first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP]
        for first, resolvers in _Base.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:
                    continue  # unhashable: the base class refuses it with a mark
                if duplicate:
                    raise ConstructorError(
                        "while reading a mapping",
                        node.start_mark,
                        f"duplicate key {_short(key)}",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)

    def construct_bounded_int(self, node: Any) -> int:
        try:
            return int(super().construct_yaml_int(node))
        except ValueError:
            raise ConstructorError(
                None, None, "integer has too many digits", node.start_mark
            ) from None


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_bounded_int)


class _Refused(Exception):
    """A bound was exceeded: ``where`` (line/column) and ``reason``."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(reason)
        self.where = where
        self.reason = reason


def _short(value: object, limit: int = 60) -> str:
    try:
        text = repr(value) if isinstance(value, str) else str(value)
    except ValueError:  # an integer too long to print in decimal
        return "a very large number"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _scan(text: str) -> None:
    """Walk the event stream once; raise :class:`_Refused` on an anchor, alias,
    too deep nesting or too many values (syntax errors surface as ``YAMLError``)."""
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_Base):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(
                _where(event.start_mark),
                "YAML anchors and aliases (&name, *name) are not supported; write the value out",
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _Refused(_where(event.start_mark), f"nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if nodes > MAX_NODES:
                raise _Refused(
                    _where(event.start_mark), f"more than {MAX_NODES} values in one document"
                )


def _non_json(data: Any) -> Iterator[tuple[str, str]]:
    """``(field path, reason)`` for every value that is not plain JSON data (iterative)."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    yield path, f"keys must be strings (got {_short(key)})"
                    continue
                stack.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}" if path else str(i), v) for i, v in enumerate(value))
        elif isinstance(value, int) and value.bit_length() > 64:
            yield path, "integer out of range (more than 64 bits)"
        elif not isinstance(value, _PLAIN):
            yield path, f"unsupported YAML value of type {type(value).__name__}"


def _load(text: str) -> Any:
    """Scan, then construct. Raises ``_Refused`` or ``yaml.YAMLError``."""
    _scan(text)
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader


def _yaml_problem(source: str, exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return Problem(source, _where(mark), f"invalid YAML: {problem}")


def parse_yaml(text: str, source: str) -> Any:
    """Parse one YAML document within the bounds; plain JSON data or ``ScenarioError``."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ScenarioError([Problem(source, "", "not UTF-8 text")]) from None
    if size > MAX_BYTES:
        raise ScenarioError([Problem(source, "", f"{_size(size)}, over the {_limit()} limit")])
    try:
        data = _load(text)
    except _Refused as exc:
        raise ScenarioError([Problem(source, exc.where, exc.reason)]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError([_yaml_problem(source, exc)]) from None
    bad = [Problem(source, field, reason) for field, reason in _non_json(data)]
    if bad:
        raise ScenarioError(bad)
    return data


def parse_value(raw: str, source: str, field: str) -> Any:
    """A ``--set`` value read as YAML (``0.1``, ``true``, ``[64, 32]``).

    Text that is not valid YAML stays a plain string (``name=a: b``); a value
    that breaks a bound (an alias, deep nesting, oversize) is an error.
    """
    if not raw.strip():
        return ""
    try:
        return parse_yaml(raw, source)
    except ScenarioError as exc:
        if all(p.reason.startswith("invalid YAML:") for p in exc.problems):
            return raw
        raise ScenarioError([Problem(source, field, p.reason) for p in exc.problems]) from None


def _limit() -> str:
    return f"{MAX_BYTES // (1 << 20)} MiB ({MAX_BYTES} bytes)"


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n} bytes"


def _read_bytes(path: Path, what: str) -> bytes:
    source = str(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ScenarioError([Problem(source, "", "file not found")]) from None
    except PermissionError:
        raise ScenarioError([Problem(source, "", "cannot read: permission denied")]) from None
    except OSError as exc:
        raise ScenarioError([Problem(source, "", f"cannot read: {exc.strerror}")]) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ScenarioError([Problem(source, "", f"is a directory, not a {what} file")])
        if not stat.S_ISREG(info.st_mode):
            raise ScenarioError([Problem(source, "", f"not a regular file; {what}s are files")])
        too_big = Problem(source, "", f"file is {_size(info.st_size)}, over the {_limit()} limit")
        if info.st_size > MAX_BYTES:
            raise ScenarioError([too_big])
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_BYTES:
            chunk = os.read(fd, MAX_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_BYTES:  # it grew after fstat
            raise ScenarioError([too_big])
        return b"".join(chunks)
    except OSError as exc:
        raise ScenarioError([Problem(source, "", f"cannot read: {exc.strerror}")]) from None
    finally:
        os.close(fd)


def read_text(path: Path, what: str = "scenario") -> str:
    """The file's text: a regular file of at most 1 MiB of UTF-8 without NUL bytes."""
    data = _read_bytes(path, what)
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    nul = data.find(b"\x00")
    if nul >= 0:
        reason = f"a binary file (NUL byte at offset {nul}), not YAML text"
        raise ScenarioError([Problem(str(path), "", reason)])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        raise ScenarioError([Problem(str(path), "", reason)]) from None


def read_mapping(path: Path, what: str = "scenario") -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping (an empty file is an error)."""
    data = parse_yaml(read_text(path, what), str(path))
    if data is None:
        raise ScenarioError([Problem(str(path), "", f"empty {what} (no settings in the file)")])
    if not isinstance(data, dict):
        raise ScenarioError([Problem(str(path), "", "the top level must be a mapping")])
    return data
