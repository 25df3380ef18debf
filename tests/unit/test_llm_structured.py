"""JSON output: finding it in a model's reply, checking it, and asking for a repair."""

from __future__ import annotations

import json
from typing import Any

import pytest

from titan.errors import LLMError
from titan.llm import structured

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "score": {"type": "number", "minimum": 0},
    },
    "required": ["name", "tags"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('  \n{"a": [1, 2]}\n  ', {"a": [1, 2]}),
        ("[1, 2, 3]", [1, 2, 3]),
        ('"just a string"', "just a string"),
        ("42", 42),
        ('Here you go:\n```json\n{"a": 1}\n```\nAnything else?', {"a": 1}),
        ('```JSON\n{"b": true}```', {"b": True}),
        ('```\n{"c": null}\n```', {"c": None}),
        ('Sure! The answer is {"a": {"b": 2}} as requested.', {"a": {"b": 2}}),
        ('The list: ["x", "y"] — done', ["x", "y"]),
    ],
    ids=["whole", "whitespace", "array", "string", "number", "fenced-json", "fenced-upper",
         "fenced-bare", "prose-object", "prose-array"],
)
def test_extract_json_finds_the_value(text: str, expected: Any) -> None:
    assert structured.extract_json(text) == expected


def test_extract_json_prefers_the_fenced_block_over_other_braces() -> None:
    text = 'Use {braces} carefully.\n```json\n{"picked": "fence"}\n```'
    assert structured.extract_json(text) == {"picked": "fence"}


def test_extract_json_takes_the_outermost_span() -> None:
    assert structured.extract_json('x {"outer": {"inner": [1]}} y') == {"outer": {"inner": [1]}}


@pytest.mark.parametrize(
    "text",
    ["", "   ", "no json here at all", "} backwards {", "```json\n```"],
    ids=["empty", "blank", "prose", "backwards", "empty-fence"],
)
def test_extract_json_raises_value_error_when_there_is_none(text: str) -> None:
    with pytest.raises(ValueError, match="no JSON value found"):
        structured.extract_json(text)


def test_broken_json_is_named_as_such_with_where_it_breaks() -> None:
    """Said to be "no JSON value", a reply with JSON broken in one place sent its reader (and
    the repair prompt) the wrong way (a QA pass)."""
    with pytest.raises(ValueError, match=r"not valid JSON \(Expecting property name.*column 2"):
        structured.extract_json("{not: json}")


def test_a_raw_newline_inside_a_string_is_taken() -> None:
    """The 0.5B model wrote a newline inside a string, which strict JSON refuses: seed 001's
    evaluator failed on it twice and the agent's run with it (a QA pass)."""
    text = '{"decision": "SYNTHESIZE", "reason": "covers the\nbasics", "gaps": []}'
    assert structured.extract_json(text) == {
        "decision": "SYNTHESIZE", "reason": "covers the\nbasics", "gaps": []}


def test_schema_grammars_keep_control_characters_out_of_strings() -> None:
    """llama-cpp-python's schema grammar let a string hold a raw newline; the grammar the
    local model decodes under follows JSON (llama.cpp's json.gbnf's rule)."""
    llama_grammar = pytest.importorskip("llama_cpp.llama_grammar")
    from titan.llm.constrained import strict_strings

    gbnf = llama_grammar.json_schema_to_gbnf(json.dumps(
        {"type": "object", "properties": {"reason": {"type": "string"}}}))
    char = [line for line in strict_strings(gbnf).split("\n") if line.startswith("char ::=")]
    assert char[0].startswith(r'char ::= [^"\\\x7F\x00-\x1F] | "\\" ')
    assert strict_strings("root ::= x") == "root ::= x"  # nothing else is touched


def test_problems_accepts_a_valid_value() -> None:
    validator = structured.check_schema(SCHEMA)
    value, found = structured.problems('```json\n{"name": "n", "tags": ["a"]}\n```', validator)
    assert found == []
    assert value == {"name": "n", "tags": ["a"]}


def test_problems_name_each_violation_with_its_path() -> None:
    validator = structured.check_schema(SCHEMA)
    value, found = structured.problems(
        json.dumps({"tags": ["ok", 3], "score": -1, "extra": 1}), validator)
    assert value is None
    joined = "\n".join(found)
    assert "(root): 'name' is a required property" in found
    assert any(p.startswith("tags/1: 3 is not of type 'string'") for p in found), joined
    assert any(p.startswith("score: -1 is less than the minimum of 0") for p in found), joined
    assert any(p.startswith("(root): Additional properties") and "'extra'" in p
               for p in found), joined
    # Sorted by path: the root's problems come first.
    assert found[0].startswith("(root)")


def test_problems_caps_the_list_at_ten() -> None:
    validator = structured.check_schema({"type": "array", "items": {"type": "string"}})
    value, found = structured.problems(json.dumps(list(range(25))), validator)
    assert value is None
    assert len(found) == 10
    assert found[0] == "0: 0 is not of type 'string'"


def test_problems_with_a_wrong_type_at_the_root() -> None:
    validator = structured.check_schema(SCHEMA)
    value, found = structured.problems("[1, 2]", validator)
    assert value is None
    assert found == ["(root): [1, 2] is not of type 'object'"]


def test_problems_on_empty_output_says_so() -> None:
    validator = structured.check_schema(SCHEMA)
    value, found = structured.problems("   ", validator)
    assert value is None
    assert len(found) == 1
    assert "no JSON value found" in found[0]
    assert "(empty output)" in found[0]


def test_problems_on_prose_quotes_the_start_of_the_text() -> None:
    validator = structured.check_schema(SCHEMA)
    text = "I cannot do that. " * 40
    value, found = structured.problems(text, validator)
    assert value is None
    assert "I cannot do that." in found[0]
    assert len(found[0]) < 300  # a snippet, not the whole reply


def test_repair_messages_append_the_bad_reply_and_the_problems() -> None:
    asked = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "go"}]
    found = ["(root): 'name' is a required property", "tags/0: 1 is not of type 'string'"]
    out = structured.repair_messages(asked, '{"tags": [1]}', found, SCHEMA)
    assert out[:2] == asked
    assert asked == [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": "go"}]  # the input list is not changed
    assert out[2] == {"role": "assistant", "content": '{"tags": [1]}'}
    assert out[3]["role"] == "user"
    assert len(out) == 4
    repair = out[3]["content"]
    assert "- (root): 'name' is a required property\n- tags/0: 1 is not of type 'string'" in repair
    assert repair.endswith(json.dumps(SCHEMA))
    assert "only the corrected JSON" in repair


def test_check_schema_returns_a_validator_for_a_valid_schema() -> None:
    validator = structured.check_schema(SCHEMA)
    assert validator.is_valid({"name": "x", "tags": []})
    assert not validator.is_valid({"name": "x"})


@pytest.mark.parametrize("schema", [["type", "object"], "object", None, 3],
                         ids=["list", "str", "none", "int"])
def test_check_schema_rejects_a_non_dict(schema: Any) -> None:
    with pytest.raises(LLMError, match="json_schema must be a dict"):
        structured.check_schema(schema)


@pytest.mark.parametrize(
    "schema",
    [{"type": "objekt"}, {"type": "object", "required": "name"}, {"minimum": "zero"}],
    ids=["unknown-type", "required-not-list", "minimum-not-number"],
)
def test_check_schema_rejects_an_invalid_schema(schema: dict[str, Any]) -> None:
    with pytest.raises(LLMError, match="json_schema is not a valid JSON Schema"):
        structured.check_schema(schema)
