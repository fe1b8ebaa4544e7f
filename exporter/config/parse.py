"""YAML text to ``Config``, reporting the first problem as ``<source>:<line>: <key.path>: <reason>``.

The text is composed (``yaml.compose``), not loaded: the node tree keeps a line for every key and
value, which ``yaml.safe_load`` would throw away, and it lets us see duplicate keys, which plain
loading silently merges (last one wins).

A nesting limit is enforced while composing: 1 KB of ``[`` reached PyYAML's recursive composer as a
RecursionError.  (The size limit on the bytes read is the file reader's: exporter/config/loader.py.)

Imported only when there is text to parse: PyYAML costs ~20 ms to import (it compiles its resolver's
regular expressions), on the way to the first attached probe of an agent that has no config file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.error import Mark, MarkedYAMLError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from exporter.config.loader import one_line as _one_line
from exporter.config.model import Config
from exporter.config.schema import SECTIONS, Key, Kind, Section, section
from exporter.config.values import BadValueError, quote, suggest
from exporter.errors import ConfigError

_T = "tag:yaml.org,2002:"
_STR, _INT, _BOOL, _NULL = _T + "str", _T + "int", _T + "bool", _T + "null"
_SEQ, _MAP = _T + "seq", _T + "map"

_SCALAR_KINDS = {_STR: Kind.STRING, _INT: Kind.INTEGER, _BOOL: Kind.BOOLEAN}
_SCALAR_NAMES = {
    _STR: "string",
    _INT: "integer",
    _BOOL: "boolean",
    _T + "float": "float",
    _T + "timestamp": "timestamp",
    _T + "binary": "binary",
}

# Only used for its YAML 1.1 int/bool rules (0x10, 1_000, yes/no), so the numbers match what
# yaml.safe_load would give for the same text.
_CONSTRUCTOR = SafeConstructor()

# Deepest nesting of collections. A pktpath config needs 3 (the top-level mapping, a section's
# mapping, a list in it); PyYAML's composer recurses about 3 Python frames per level and reaches
# Python's recursion limit near 330 levels.
MAX_NESTING = 16


def parse_config(text: str, source: str = "<config>", env: Mapping[str, str] | None = None) -> Config:
    """Parse YAML ``text``; ``source`` names it in messages. Raises ConfigError on the first problem."""
    root = _compose(text, source)
    return _Walker(source, os.environ if env is None else env).config(root)


# --- YAML syntax -----------------------------------------------------------------------------


class _TooDeep(MarkedYAMLError):
    pass


class _DepthLimitedLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses collections nested deeper than MAX_NESTING.

    The scanner and the parser keep explicit stacks; only the composer recurses, so counting here,
    before a node's children are composed, stops the recursion at a depth Python always has room for.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.CollectionStartEvent):
            if self._depth >= MAX_NESTING:
                mark: Mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _TooDeep(problem=f"nested deeper than {MAX_NESTING} levels", problem_mark=mark)
            self._depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        return super().compose_node(parent, index)


def _compose(text: str, source: str) -> Node | None:
    loader: _DepthLimitedLoader | None = None
    try:
        # The reader checks the text for control characters as soon as the loader is made.
        loader = _DepthLimitedLoader(text)
        return loader.get_single_node()  # type: ignore[no-any-return]
    except _TooDeep as exc:
        deep = exc.problem_mark
        assert deep is not None
        raise ConfigError(
            f"{source}:{deep.line + 1}:{deep.column + 1}: {exc.problem} (a pktpath config needs 3)"
        ) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = exc.problem or exc.context or "syntax error"
        if exc.context and exc.problem and exc.problem.startswith("but "):
            # "but found another document" means nothing without "expected a single document in the stream".
            problem = f"{exc.context}, {exc.problem}"
        raise ConfigError(_one_line(f"{source}:{line}:{column}: invalid YAML: {problem}")) from exc
    except yaml.reader.ReaderError as exc:
        # Raised for control characters; it has a character offset rather than a mark.
        before = text[: exc.position]
        line, column = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        problem = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
        raise ConfigError(f"{source}:{line}:{column}: invalid YAML: {problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(_one_line(f"{source}:1:1: invalid YAML: {exc}")) from exc
    finally:
        if loader is not None:
            loader.dispose()


# --- ${VAR} expansion ------------------------------------------------------------------------

_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Expand ${NAME} and ${NAME:-default}; '$$' is a literal '$', a '$' before anything else stays as is.

    One pass only: text coming from a variable is not expanded again, so a value cannot smuggle in
    a reference to another variable.
    """
    out: list[str] = []
    pos = 0
    while (dollar := text.find("$", pos)) >= 0:
        out.append(text[pos:dollar])
        following = text[dollar + 1 : dollar + 2]
        if following == "$":
            out.append("$")
            pos = dollar + 2
            continue
        if following != "{":
            out.append("$")
            pos = dollar + 1
            continue
        close = text.find("}", dollar + 2)
        if close < 0:
            raise BadValueError(f"unterminated variable reference {quote(text[dollar:])} (missing '}}')")
        reference = text[dollar : close + 1]
        name, has_default, default = text[dollar + 2 : close].partition(":-")
        if not _VAR_NAME.fullmatch(name) or "${" in default:
            forms = "${NAME} or ${NAME:-default}"
            raise BadValueError(f"malformed variable reference {quote(reference)} (use {forms})")
        value = env.get(name)
        if has_default:
            # Shell semantics: an empty variable also takes the default.
            value = value or default
        elif value is None:
            raise BadValueError(f"environment variable {name} is not set")
        out.append(value)
        pos = close + 1
    out.append(text[pos:])
    return "".join(out)


# --- walking the node tree -------------------------------------------------------------------


def describe(node: Node) -> str:
    """The YAML type of a node, with its text for scalars: 'string "lots"', 'integer 5', 'list'."""
    if isinstance(node, ScalarNode):
        if node.tag == _STR:
            return f"string {quote(node.value)}"
        if node.tag == _NULL:
            return "null"
        name = _SCALAR_NAMES.get(node.tag)
        if name is not None:
            return f"{name} {_one_line(node.value)[:60]}"
    elif isinstance(node, SequenceNode) and node.tag == _SEQ:
        return "list"
    elif isinstance(node, MappingNode) and node.tag == _MAP:
        return "mapping"
    return f"value tagged {node.tag}"


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL


class _Walker:
    def __init__(self, source: str, env: Mapping[str, str]) -> None:
        self.source = source
        self.env = env

    def fail(self, node: Node, path: str, message: str) -> ConfigError:
        where = f"{self.source}:{node.start_mark.line + 1}:"
        return ConfigError(_one_line(f"{where} {path}: {message}" if path else f"{where} {message}"))

    def config(self, root: Node | None) -> Config:
        values: dict[str, Any] = {}
        if root is not None and not _is_null(root):
            if not (isinstance(root, MappingNode) and root.tag == _MAP):
                # Always line 1: the document as a whole is what is wrong, wherever its first token is.
                raise ConfigError(f"{self.source}:1: expected a mapping at the top level, got {describe(root)}")
            for name, key_node, value_node in self.items(root, ""):
                sec = section(name)
                if sec is None:
                    raise self.fail(key_node, name, _unknown([s.name for s in SECTIONS], name))
                values[name] = self.build_section(sec, value_node)
        for sec in SECTIONS:
            if sec.name not in values:
                values[sec.name] = sec.build({key.name: key.default for key in sec.keys})
        return Config(**values)

    def items(self, node: MappingNode, path: str) -> Iterator[tuple[str, ScalarNode, Node]]:
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise self.fail(key_node, path, f"a key must be a plain name, got {describe(key_node)}")
            # The raw text, whatever YAML type it resolves to: "1:" or "yes:" are just unknown keys.
            name = key_node.value
            key_path = f"{path}.{name}" if path else name
            if name in seen:
                raise self.fail(key_node, key_path, f"duplicate key (first set on line {seen[name]})")
            seen[name] = key_node.start_mark.line + 1
            yield name, key_node, value_node

    def build_section(self, sec: Section, node: Node) -> object:
        values = {key.name: key.default for key in sec.keys}
        if not _is_null(node):
            if not (isinstance(node, MappingNode) and node.tag == _MAP):
                raise self.fail(node, sec.name, f"expected a mapping, got {describe(node)}")
            for name, key_node, value_node in self.items(node, sec.name):
                key = sec.key(name)
                path = f"{sec.name}.{name}"
                if key is None:
                    raise self.fail(key_node, path, _unknown([k.name for k in sec.keys], name))
                if not _is_null(value_node):
                    values[name] = self.value(key, value_node, path)
        return sec.build(values)

    def value(self, key: Key, node: Node, path: str) -> object:
        if not key.many:
            return self.scalar(key, node, path)
        if not (isinstance(node, SequenceNode) and node.tag == _SEQ):
            # A bare scalar is refused rather than wrapped: "interfaces: eth0,eth1" would otherwise
            # quietly become one interface called "eth0,eth1".
            raise self.fail(node, path, f"expected a list, got {describe(node)}")
        if key.max_items is not None and len(node.value) > key.max_items:
            # Before the items are checked: 20,000 CIDRs fail at once, not after parsing each.
            raise self.fail(
                node, path, f"{len(node.value)} entries, more than the {key.max_items} {key.capacity_of} holds"
            )
        return tuple(self.scalar(key, item, f"{path}[{index}]") for index, item in enumerate(node.value))

    def scalar(self, key: Key, node: Node, path: str) -> object:
        kind = _SCALAR_KINDS.get(node.tag) if isinstance(node, ScalarNode) else None
        if kind is None or kind not in key.kinds:
            message = f"expected {key.expected_text()}, got {describe(node)}"
            if isinstance(node, ScalarNode) and kind is Kind.STRING and "${" in node.value:
                message += " (${VAR} expansion only produces strings)"
            raise self.fail(node, path, message)
        assert isinstance(node, ScalarNode)
        raw = node.value
        value: Any
        try:
            if kind is Kind.STRING:
                value = expand(raw, self.env)
            elif kind is Kind.INTEGER:
                value = _CONSTRUCTOR.construct_yaml_int(node)
            else:
                value = _CONSTRUCTOR.construct_yaml_bool(node)
        except BadValueError as exc:
            raise self.fail(node, path, str(exc)) from exc
        except (ValueError, KeyError) as exc:
            # Only reachable with an explicit tag on text that does not fit it ("!!int ten").
            raise self.fail(node, path, f"{quote(raw)} is not a valid {kind.value.split()[-1]}") from exc
        if key.check is None:
            return value
        try:
            return key.check(value)
        except BadValueError as exc:
            note = f" (expanded from {quote(raw)})" if kind is Kind.STRING and value != raw else ""
            raise self.fail(node, path, f"{exc}{note}") from exc


def _unknown(known: list[str], name: str) -> str:
    return f"unknown key (known: {', '.join(known)}){suggest(name, known)}"
