"""JSON output: pull it out of the text, check it against the schema, ask once for a repair.

Providers that can constrain decoding are asked to (llama.cpp turns the schema into a
grammar; hosted APIs get their native JSON mode), but the result is validated either way:
a grammar can be cut short by ``max_tokens`` and a hosted JSON mode is a request, not a
guarantee.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from titan.errors import LLMError

from .types import Message

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


def check_schema(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for ``schema``; a schema that is itself invalid is the caller's bug."""
    # Imported here: jsonschema costs ~0.1 s, and every `titan` command imports this package.
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(schema, dict):
        raise LLMError(f"json_schema must be a dict (a JSON Schema), not {type(schema).__name__}")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise LLMError(f"json_schema is not a valid JSON Schema: {exc.message}") from None
    return Draft202012Validator(schema)


def extract_json(text: str) -> Any:
    """The JSON value in a model's reply: the whole text, a fenced block, or the span from
    the first ``{``/``[`` to the last matching bracket. Raises ``ValueError`` when there is
    none. Never a value nested inside a broken one: from a reply cut off inside an object,
    the object's inner list is not the answer."""
    candidates = [text.strip()]
    candidates += [m.strip() for m in _FENCE.findall(text)]
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if starts:
        start = min(starts)
        end = text.rfind("}" if text[start] == "{" else "]")
        if start < end:
            candidates.append(text[start:end + 1])
    candidates = [c for c in candidates if c]
    last_error: ValueError | None = None  # the bracketed span's, when there is one: last
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError as exc:
            last_error = exc
    # A raw newline or tab inside a string is the usual fault of a small model's JSON (and of
    # grammars that let it through): the value is plain, so take it rather than fail a stage.
    for candidate in candidates:
        try:
            return json.loads(candidate, strict=False)
        except ValueError:
            continue
    if last_error is not None and starts and start < end:
        # Something bracketed, only broken: say how, not that there was no JSON.
        raise ValueError(f"the output is not valid JSON ({last_error})")
    raise ValueError("no JSON value found in the output")


def problems(text: str, validator: Draft202012Validator) -> tuple[Any, list[str]]:
    """``(value, [])`` when ``text`` holds JSON matching the schema, else ``(None, problems)``."""
    try:
        value = extract_json(text)
    except ValueError as exc:
        snippet = text.strip()[:200] or "(empty output)"
        return None, [f"{exc}: {snippet!r}"]
    found = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        found.append(f"{where}: {error.message}")
    return (value, []) if not found else (None, found[:10])


def repair_messages(messages: list[Message], text: str, found: list[str],
                    schema: dict[str, Any]) -> list[Message]:
    """The conversation for the one repair attempt: the bad reply and what is wrong with it."""
    return [
        *messages,
        {"role": "assistant", "content": text},
        {"role": "user", "content": (
            "That reply is not valid JSON for the required schema. Problems:\n- "
            + "\n- ".join(found)
            + "\n\nReply with only the corrected JSON, no prose, matching this JSON Schema:\n"
            + json.dumps(schema)
        )},
    ]
