"""Reading a YAML config file: every fault is one line with its line and column.

A syntax error names where it is and what to change (a tab, an unclosed quote or bracket, a
key indented out of line); a key written twice in one section is refused instead of keeping
the last value; an empty file or a top level that is not ``key: value`` pairs is refused.
`read_config_file` also returns where each dotted key was written, so that a later error about
a key's value (a wrong type, a range, a non-finite number) can point at its line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pfedkit.core.errors import ConfigError

MERGE_KEY = "<<"


@dataclass(frozen=True)
class Place:
    """A position in a file, 1-based as editors show it."""

    line: int
    column: int

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}"

    @classmethod
    def of(cls, mark: Any) -> "Place":
        """From a PyYAML mark (0-based line and column)."""
        return cls(mark.line + 1, mark.column + 1)


def read_config_file(path: Path) -> tuple[dict[str, Any], dict[str, Place]]:
    """Parse ``path`` into a nested mapping and the place of each dotted key (``"train.lr"``).

    Raises:
        ConfigError: the file is missing, is not valid YAML, writes a key twice in one section,
            is empty, or its top level is not a mapping; the message names the file, the line
            and column, and the fix.
    """
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the config file ({err}); pass a UTF-8 YAML file") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{path}: the config file is empty (or only comments); write at least one "
                              f"`key: value` line, or leave the config out to run with the defaults")
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(f"{path}, {Place.of(node.start_mark)}: the top level must be `key: value` pairs, "
                              f"got {_kind(node)}; write sections such as `train:` with indented keys")
        places: dict[str, Place] = {}
        _locate_keys(path, node, "", places)
        raw = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        raise ConfigError(syntax_error_message(path, err)) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    finally:
        loader.dispose()
    return raw, places


def syntax_error_message(path: Path | str, err: yaml.MarkedYAMLError) -> str:
    """One line for a PyYAML syntax error: where, what went wrong and what to change."""
    problem = err.problem or ""
    context = err.context or ""
    at = Place.of(err.problem_mark) if err.problem_mark is not None else None
    opened = Place.of(err.context_mark) if err.context_mark is not None else None
    if "'\\t'" in problem:
        what, fix = "a tab character", "indent with spaces, not tabs"
    elif "quoted scalar" in context and opened is not None:
        at, what, fix = opened, "this quote is never closed", "add the closing quote on the same line"
    elif "flow mapping" in context and opened is not None:
        at, what, fix = opened, "this '{' is not closed", f"close it with '}}' (the file goes on at {Place.of(err.problem_mark)})"
    elif "flow sequence" in context and opened is not None:
        at, what, fix = opened, "this '[' is not closed", f"close it with ']' (the file goes on at {Place.of(err.problem_mark)})"
    elif "expected <block end>" in problem:
        what, fix = "a key indented out of line with the keys above it", \
            "give keys of one section the same indentation (nested keys: more spaces than their section)"
    elif "mapping values are not allowed" in problem:
        what, fix = "a ':' where a value was expected", \
            "put a nested key on its own, further-indented line, or quote a value that contains ': '"
    else:
        what, fix = problem or context or "a syntax error", "check the YAML syntax there"
    where = f", {at}" if at is not None else ""
    return f"{path}{where}: not valid YAML: {what}; {fix}"


def _locate_keys(path: Path, node: yaml.MappingNode, prefix: str, places: dict[str, Place]) -> None:
    """Record where each key of ``node`` (and of its nested mappings) is written; refuse a key
    written twice in the same mapping."""
    first: dict[str, Place] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.value == MERGE_KEY:
            continue
        key, here = str(key_node.value), Place.of(key_node.start_mark)
        if key in first:
            raise ConfigError(f"{path}: duplicate key {prefix + key!r} at {here} (first at line "
                              f"{first[key].line}); write each key once")
        first[key] = here
        places[prefix + key] = here
        if isinstance(value_node, yaml.MappingNode):
            _locate_keys(path, value_node, f"{prefix}{key}.", places)


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"the single value {node.value!r}" if isinstance(node, yaml.ScalarNode) else "something else"
