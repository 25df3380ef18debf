"""The values that cross the LLM layer: messages in, a :class:`Completion` out."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

Message = dict[str, Any]

# A last line that opens what the cut took away: a list marker with nothing after it ("4.")
# or a heading. Ending with "." does not make "4." a sentence.
_OPEN_LINE = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|#{1,6}\s.*)\s*$")


#: Where a sentence ends: its mark, any closing quotes or brackets, then a space or a line's
#: end; or a full-width mark (Chinese, Japanese), which needs no space after it.
_SENTENCE_END = re.compile(r"[.!?…][\"'”’»)\]]*(?=\s|$)|[。！？][\"'”’」』)）]*|\n")


def _without_open_lines(text: str) -> str:
    lines = text.splitlines()
    while lines and (not lines[-1].strip() or _OPEN_LINE.match(lines[-1])):
        lines.pop()
    return "\n".join(lines).rstrip()


@dataclass(frozen=True)
class Usage:
    """Tokens by type. ``cached`` and ``reasoning`` are parts of ``input``/``output``."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Request:
    """What a provider is asked to do (``model`` is the provider's own model id)."""

    model: str
    messages: list[Message]
    temperature: float | None = None
    max_tokens: int | None = None
    json_schema: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Generation:
    """One provider answer, before pricing and validation. ``usage`` is None when the
    provider did not report it: the answer's cost is then unknown, never $0."""

    text: str
    usage: Usage | None
    model: str
    finish_reason: str | None = None
    #: The tools the model asked to call, as OpenAI's wire has them (see Completion).
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    #: The provider's own name for the model that answered, when it says one.
    provider_model: str | None = None


@dataclass(frozen=True)
class Completion:
    """The result of :func:`titan.llm.complete`.

    ``cost_usd`` is ``None`` when the price is unknown (never a made-up $0), as it is when
    the provider did not report the tokens it used (``usage`` is then all zeros);
    ``cost_source`` says where the figure comes from: ``local`` (your own CPU: free),
    ``litellm`` (LiteLLM's bundled price map), ``registered`` (Titan's or your
    :func:`~titan.llm.register_price`), ``unknown``. ``data`` is the parsed, validated JSON
    when ``json_schema`` was given. ``tool_calls``: the tools the model asked to call (when
    it was given ``tools=``), each ``{"id", "type": "function", "function": {"name",
    "arguments"}}`` with the arguments as the JSON text the model wrote; :meth:`message`
    puts them back into the conversation.

    ``model`` is the model that answered as Titan names it — the string asked for, resolved
    (``local`` is ``local/qwen2.5-coder-0.5b``; a forked replay's ``--model`` replaces it):
    what prices, recordings and a run's cost by model are keyed on. ``provider_model`` is
    the provider's own name for it, when it reports one (``gpt-4o-mini-2024-07-18`` for
    ``gpt-4o-mini``), else None."""

    text: str
    usage: Usage
    model: str
    cost_usd: float | None
    cost_source: str
    provider: str = ""
    finish_reason: str | None = None
    duration_s: float = 0.0
    attempts: int = 1
    data: Any = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    provider_model: str | None = None

    def message(self) -> Message:
        """This answer as the assistant message that follows it in a conversation: with its
        ``tool_calls`` (and ``content`` None when it said nothing else), for the follow-up
        call that gives the tools' results as ``{"role": "tool", "tool_call_id", "content"}``."""
        out: Message = {"role": "assistant",
                        "content": self.text if self.text or not self.tool_calls else None}
        if self.tool_calls:
            out["tool_calls"] = [dict(c) for c in self.tool_calls]
        return out

    @property
    def truncated(self) -> bool:
        """True when the reply stopped at ``max_tokens`` rather than where the model ended it."""
        return self.finish_reason == "length"

    def whole_sentences(self) -> str:
        """The text, cut back to its last complete sentence if the reply was truncated
        (a report reads better one sentence shorter than with half a sentence at the end),
        without a list marker or heading the cut left alone on the last line ("4."); empty
        when not one sentence was finished. However much it drops: kept whole, the cut
        sentence was then given a full stop downstream and passed for a finished one."""
        text = self.text.strip()
        if not self.truncated:
            return text
        text = _without_open_lines(text)
        ends = [m.end() for m in _SENTENCE_END.finditer(text)]
        if ends and ends[-1] >= len(text.rstrip()):
            return text  # it ends on a sentence's end after all
        return _without_open_lines(text[:ends[-1]].rstrip()) if ends else ""

    def json(self) -> Any:
        """The parsed JSON output (requires ``json_schema``)."""
        if self.data is None:
            raise ValueError("this completion was not asked for JSON (pass json_schema=...)")
        return self.data
