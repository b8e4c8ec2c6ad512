"""YAML documents that remember where each key was written.

A user who gets a config file wrong needs the file, the line and the key, as
Go's YAML decoder gives them to mig-parted's users. PyYAML's ``safe_load``
forgets positions and silently keeps the last of two equal keys, so this
module composes the node graph itself: it refuses duplicate keys and input
that is not text, and keeps a map from each key path to its line, which the
callers use to place validation errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from gpumodel.errors import MigConfigError

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class LinedYaml:
    """Plain data (dicts, lists, scalars) and the 1-based line of every key path."""

    data: object
    lines: dict[Path, int] = field(default_factory=dict)

    def line(self, path: Path) -> int:
        """The line of ``path``, or of its nearest ancestor that has one (1 at worst)."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 1


def load_lined(text: str | bytes, source: str) -> LinedYaml:
    """Parse one YAML document; errors are :class:`MigConfigError` naming ``source`` and line."""
    decoded = _as_text(text, source)
    loader = yaml.SafeLoader(decoded)
    try:
        node = loader.get_single_node()
        if node is None:
            return LinedYaml(None)
        lines: dict[Path, int] = {}
        data = _build(loader, node, (), lines, source)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 1
        raise MigConfigError(f"{source}: line {line}: not valid YAML: {err.problem}") from err
    except yaml.YAMLError as err:
        raise MigConfigError(f"{source}: line 1: not valid YAML: {err}") from err
    finally:
        loader.dispose()
    return LinedYaml(data, lines)


def _as_text(text: str | bytes, source: str) -> str:
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            line = raw.count(b"\n", 0, err.start) + 1
            raise MigConfigError(f"{source}: line {line}: not text: byte "
                                 f"0x{raw[err.start]:02x} is not UTF-8") from err
    for number, row in enumerate(text.split("\n"), start=1):
        bad = next((c for c in row if _is_control(c)), None)
        if bad is not None:
            raise MigConfigError(f"{source}: line {number}: not text: control character "
                                 f"{bad!r}")
    return text


def _is_control(char: str) -> bool:
    return (ord(char) < 0x20 and char not in "\t\r") or char == "\x7f"


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: Path, lines: dict[Path, int],
           source: str) -> object:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result: dict[object, object] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise MigConfigError(f"{source}: line {key_node.start_mark.line + 1}: "
                                     f"{_dotted(path) or '(top)'}: a key must be a scalar")
            child = (*path, str(key))
            if key in result:
                raise MigConfigError(f"{source}: line {key_node.start_mark.line + 1}: "
                                     f"{_dotted(child)}: key given twice")
            lines[child] = key_node.start_mark.line + 1
            result[key] = _build(loader, value_node, child, lines, source)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            items.append(_build(loader, item, (*path, index), lines, source))
        return items
    return loader.construct_object(node, deep=True)


def _dotted(path: Path) -> str:
    return ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "[")
