"""Grammar-constrained decoding that costs (almost) nothing when the model behaves.

llama-cpp-python puts the grammar sampler in front of top-k, so every generated token checks
the grammar against the whole vocabulary — 151,646 pieces for Qwen2.5. Measured on a 2-core
VM with Qwen2.5-Coder-0.5B: 26.7 tok/s unconstrained, 2.9 tok/s under the research
evaluator's schema, 0.4 tok/s under the generic JSON grammar.

llama.cpp's own tools sample the other way round, and so does :class:`RejectionSampler`:
draw a token from the usual chain without the grammar, ask the grammar about that one token,
and only when it is rejected constrain the full vocabulary and draw again. A model that was
told the schema mostly proposes valid tokens, so the grammar's cost nearly disappears while
the output stays exactly as constrained: every accepted token has passed the grammar.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

# llama-cpp-python's schema grammars (0.3.x) let a string hold any character but ``"`` and
# ``\``: raw newlines and other control characters too, which JSON forbids inside strings.
# The 0.5B model wrote a newline inside the research evaluator's reason, json.loads refused
# the "constrained" output, the repair did the same, and seed 001's agent failed at its first
# evaluation (a QA pass). llama.cpp's own json.gbnf excludes them; so does this.
_LOOSE_CHAR = 'char ::= [^"\\\\]'
_STRICT_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F]'


def strict_strings(gbnf: str) -> str:
    """A schema grammar whose strings take no raw control character (JSON's rule)."""
    return "\n".join(_STRICT_CHAR + line[len(_LOOSE_CHAR):]
                      if line.startswith(_LOOSE_CHAR) else line for line in gbnf.split("\n"))


def llama_class() -> type:
    """``llama_cpp.Llama`` with rejection-sampled grammars (imported on first use)."""
    global _LLAMA
    if _LLAMA is None:
        _LLAMA = _build()
    return _LLAMA


_LLAMA: type | None = None


def _build() -> type:
    import llama_cpp
    import numpy as np
    from llama_cpp import _internals

    class RejectionSampler:
        """Stands in for llama-cpp-python's sampler chain when a grammar is given."""

        def __init__(self, chain: Any, model: Any, grammar: Any, n_vocab: int) -> None:
            self.chain = chain  # the usual chain, built without the grammar
            self.grammar = llama_cpp.llama_sampler_init_grammar(
                model.vocab, strict_strings(grammar._grammar).encode("utf-8"),
                grammar._root.encode("utf-8"))
            if not self.grammar:
                raise ValueError("llama.cpp could not compile the JSON grammar")
            self.n_vocab = n_vocab
            self.one = (llama_cpp.llama_token_data * 1)()
            self.one_array = llama_cpp.llama_token_data_array(
                data=self.one, size=1, selected=-1, sorted=False)
            self.full = _internals.LlamaTokenDataArray(n_vocab=n_vocab)
            self.rejections = 0

        def sample(self, ctx: Any, idx: int = -1) -> int:
            # Samples and records the token in the chain (repetition penalties see it).
            token = int(llama_cpp.llama_sampler_sample(self.chain.sampler, ctx.ctx, idx))
            entry: Any = self.one[0]
            entry.id, entry.logit, entry.p = token, 0.0, 0.0
            self.one_array.size, self.one_array.selected = 1, -1
            llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(self.one_array))
            if not math.isinf(entry.logit):
                llama_cpp.llama_sampler_accept(self.grammar, token)
                return token
            # Rejected: constrain the whole vocabulary, then let the chain choose among what
            # is left (its apply() does not record the token again).
            self.rejections += 1
            logits = llama_cpp.llama_get_logits_ith(ctx.ctx, idx)
            self.full.copy_logits(np.ctypeslib.as_array(logits, shape=(self.n_vocab,)))
            candidates = ctypes.byref(self.full.candidates)
            llama_cpp.llama_sampler_apply(self.grammar, candidates)
            llama_cpp.llama_sampler_apply(self.chain.sampler, candidates)
            token = int(self.full.candidates_data.id[self.full.candidates.selected])
            llama_cpp.llama_sampler_accept(self.grammar, token)
            return token

        def close(self) -> None:
            if self.grammar:
                llama_cpp.llama_sampler_free(self.grammar)
                self.grammar = None
            self.chain.close()

        def __del__(self) -> None:
            self.close()

    base: Any = llama_cpp.Llama

    class Llama(base):  # type: ignore[misc]  # llama_cpp ships no types: its Llama is Any
        def _init_sampler(self, *args: Any, grammar: Any = None, **kwargs: Any) -> Any:
            chain = super()._init_sampler(*args, grammar=None, **kwargs)
            if grammar is None:
                return chain
            return RejectionSampler(chain, self._model, grammar, self._n_vocab)

    return Llama
