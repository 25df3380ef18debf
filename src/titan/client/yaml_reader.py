"""Reading YAML files by their nodes, so every value keeps its line: the pipeline reader's
(:mod:`titan.client.pipeline`) errors say ``file:line: message`` and name the field.

Kept apart from the pipeline's own rules (which fields a job has, which scripts it may name) so
both a pipeline's jobs and its ``schedule:`` block read through the same size limits and the same
messages.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from titan.errors import PipelineError

__all__ = ["ALIASES", "MAX_EXPANDED", "NULL_TAG", "YamlReader", "read_file_text", "safe_loader",
           "unknown_field"]

NULL_TAG = "tag:yaml.org,2002:null"
#: ``<<``, YAML's merge key: ``<<: *defaults`` copies a mapping's fields into this one.
MERGE_TAG = "tag:yaml.org,2002:merge"
#: A value's size once its aliases are expanded, in nodes and in characters of its scalars.
MAX_EXPANDED = 100_000


class YamlReader:
    """Turns composed YAML nodes into values, with errors that point at a line."""

    def __init__(self, path: Path, loader: yaml.SafeLoader) -> None:
        self.path = path
        self.loader = loader

    def error(self, node: Node | None, message: str, **details: Any) -> PipelineError:
        details = {k: v for k, v in details.items() if v is not None}
        where = str(self.path)
        if node is not None:
            line = node.start_mark.line + 1
            where = f"{where}:{line}"
            details["line"] = line
        details["file"] = str(self.path)
        return PipelineError(f"{where}: {message}", details=details)

    def value(self, node: Node) -> Any:
        """The value a node stands for, refused when its aliases expand it past
        :data:`MAX_EXPANDED` nodes or characters: 300 bytes of nested anchors (a "billion
        laughs") made the DAG builder's error message 40 MB, and one level more, gigabytes
        of a master's memory, from a viewer's request."""
        seen = chars = 0
        stack = [node]
        while stack:
            item = stack.pop()
            seen += 1
            if isinstance(item, ScalarNode):
                chars += len(item.value)
            elif isinstance(item, SequenceNode):
                stack.extend(item.value)
            elif isinstance(item, MappingNode):
                for key, value in item.value:
                    stack += (key, value)
            if seen > MAX_EXPANDED or chars > MAX_EXPANDED:
                raise self.error(node, "this value is too large once its YAML aliases are "
                                       f"expanded (more than {MAX_EXPANDED:,} nodes or "
                                       "characters)")
        return self.loader.construct_object(node, deep=True)

    def text(self, node: Node, what: str) -> str:
        """A scalar as written; null, lists and mappings are refused."""
        if not isinstance(node, ScalarNode) or node.tag == NULL_TAG:
            raise self.error(node, f"{what} must be a string")
        return str(node.value)

    def text_list(self, node: Node, what: str, *, one_ok: bool) -> list[str] | str:
        if isinstance(node, ScalarNode) and node.tag != NULL_TAG:
            # One parent by name, or an args string to be split like a shell would.
            return [str(node.value)] if one_ok else str(node.value)
        if not isinstance(node, SequenceNode):
            raise self.error(node, f"{what} must be a list of strings")
        # "job 'a': each entry of 'args'", not "each entry of job 'a': 'args'".
        label, colon, field = what.rpartition(": ")
        entry = f"{label}{colon}each entry of {field}"
        for item in node.value:
            if not isinstance(item, ScalarNode) or item.tag == NULL_TAG:
                got = ("null" if isinstance(item, ScalarNode) else "a list"
                       if isinstance(item, SequenceNode) else "a mapping")
                raise self.error(item, f"{entry} must be a string, got {got}")
        return [self.text(item, entry) for item in node.value]

    def mapping(self, node: Node, what: str, _merging: tuple[Node, ...] = ()
                ) -> list[tuple[str, Node, Node]]:
        """``(key, key_node, value_node)`` triples; duplicate and non-string keys refused.

        Merge keys are followed as YAML 1.1 defines them (the anchors-and-defaults idiom of
        Compose and CI files): ``<<: *defaults`` or ``<<: [*a, *b]`` adds the fields this
        mapping does not set itself, an earlier mapping of the list winning over a later one.
        A merged field's node keeps its own line, so an error in it points at the anchor."""
        if not isinstance(node, MappingNode):
            raise self.error(node, f"{what} must be a mapping of field: value")
        seen: set[str] = set()
        out: list[tuple[str, Node, Node]] = []
        merged: list[tuple[str, Node, Node]] = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise self.error(key_node, f"{what} has a key that is not a plain name")
            if key_node.tag == MERGE_TAG:
                merged += self._merged(value_node, what, (*_merging, node))
                continue
            key = str(key_node.value)
            if key in seen:
                raise self.error(key_node, f"{what} has the field {key!r} twice")
            seen.add(key)
            out.append((key, key_node, value_node))
        for key, key_node, value_node in merged:
            if key not in seen:
                seen.add(key)
                out.append((key, key_node, value_node))
        return out

    def _merged(self, node: Node, what: str, merging: tuple[Node, ...]
                ) -> list[tuple[str, Node, Node]]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        fields: list[tuple[str, Node, Node]] = []
        for source in sources:
            if not isinstance(source, MappingNode):
                raise self.error(source, f"{what}: '<<' merges mappings only (an alias of "
                                         "one, '<<: *defaults', or a list of them)")
            if any(source is outer for outer in merging):
                raise self.error(source, f"{what}: '<<' merges a mapping into itself")
            fields += self.mapping(source, what, merging)
        return fields


#: Names people reach for (the SDK's, other tools') and the field they mean.
ALIASES = {"parents": "depends_on", "parent": "depends_on", "dependencies": "depends_on",
            "needs": "depends_on", "job_id": "id", "name": "id", "filename": "file",
            "script": "file", "job_type": "type", "requires": "requirement", "arguments": "args"}


def unknown_field(key: str, known: Any) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    if key in ALIASES and ALIASES[key] in known:
        close = [ALIASES[key]]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown field {key!r}{hint}; known fields: {', '.join(known)}"


def read_file_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineError(f"{path}: pipeline file not found", details={"file": str(path)})\
            from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path}: cannot read the pipeline file: {exc}",
                            details={"file": str(path)}) from None


def safe_loader(text: str) -> yaml.SafeLoader:
    """A safe loader over ``text``: libyaml's where PyYAML has it (composing a 10,000-job
    file took 7-15 s in pure Python, ~7 times less in C), with the same nodes and marks."""
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return loader_class(text)
