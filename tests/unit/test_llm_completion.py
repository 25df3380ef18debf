"""What a Completion offers beyond its fields: truncation and whole sentences."""

from __future__ import annotations

import pytest

from titan.llm import Completion, Usage


def reply(text: str, finish_reason: str | None) -> Completion:
    return Completion(text=text, usage=Usage(10, 5), model="m", cost_usd=0.0,
                      cost_source="local", finish_reason=finish_reason)


def test_a_reply_the_model_ended_is_kept_as_it_is() -> None:
    done = reply("  LoRA freezes the base weights and trains", "stop")
    assert not done.truncated
    assert done.whole_sentences() == "LoRA freezes the base weights and trains"


@pytest.mark.parametrize(("text", "expected"), [
    ("LoRA freezes the weights. It trains two small matrices. The rank r is",
     "LoRA freezes the weights. It trains two small matrices."),
    ("- rank 8 is common\n- alpha scales the update\n- dropout of",
     "- rank 8 is common\n- alpha scales the update"),
    ("Is it cheap? Yes! Memory drops by", "Is it cheap? Yes!"),
    ("It ends cleanly.", "It ends cleanly."),
    # A list or a heading the cut opened and took away is not left dangling.
    ("Adapters are small.\n\n1. Rank 8 is common.\n2. Alpha scales the update.\n\n3.",
     "Adapters are small.\n\n1. Rank 8 is common.\n2. Alpha scales the update."),
    ("LoRA freezes the base weights and trains two small matrices.\n\n### Mechanisms\n\n1. **Ra",
     "LoRA freezes the base weights and trains two small matrices."),
])
def test_a_truncated_reply_is_cut_back_to_its_last_sentence(text: str, expected: str) -> None:
    cut = reply(text, "length")
    assert cut.truncated
    assert cut.whole_sentences() == expected


@pytest.mark.parametrize(("text", "expected"), [
    ('Analysts wrote that "costs rose sharply." Demand in Europe began to',
     'Analysts wrote that "costs rose sharply."'),
    ("(See the 2023 report.) Demand then", "(See the 2023 report.)"),
    ("成本大幅上升。欧洲的需求随后开始", "成本大幅上升。"),
    ("コストが上がった。需要は", "コストが上がった。"),
    ("It ends in a quote.\u201d", "It ends in a quote.\u201d"),
])
def test_a_sentence_ends_past_its_quotes_and_brackets_and_in_cjk(text: str,
                                                                  expected: str) -> None:
    # Only ". " and the like counted: these lost every sentence they had.
    assert reply(text, "length").whole_sentences() == expected


def test_an_unfinished_sentence_goes_however_long_it_is() -> None:
    # Kept when it was most of the text, it was then given a full stop and passed for a
    # finished sentence ("...causing water to rise and.").
    text = "Short. " + "an unfinished sentence that goes on and on without an end " * 3
    assert reply(text, "length").whole_sentences() == "Short."
    assert reply("Tides flow through the ocean, causing water to rise and",
                 "length").whole_sentences() == ""
