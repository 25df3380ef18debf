"""One module's page: its API read with ``ast`` (exact), its purpose explained by a model.

    document_module.py BATCH RELATIVE_PATH [MODEL]
"""

import ast
import sys

from titan import llm
from titan_sdk import TitanClient

batch, rel = sys.argv[1], sys.argv[2]
model = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
client = TitanClient()
source = client.store_get(f"docgen:{batch}:src:{rel}")
if source is None:
    sys.exit(f"the dispatcher left no source for {rel}")

tree = ast.parse(source)
api = []
for node in tree.body:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
        api.append(f"- `{node.name}({ast.unparse(node.args)})`: {ast.get_docstring(node) or ''}")
    elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
        api.append(f"- class `{node.name}`: {ast.get_docstring(node) or ''}")
        api += [f"  - `{m.name}({ast.unparse(m.args)})`: {ast.get_docstring(m) or ''}"
                for m in node.body if isinstance(m, ast.FunctionDef) and not m.name.startswith("_")]

reply = llm.complete(
    [{"role": "system", "content": "You write short, accurate documentation for Python code."},
     {"role": "user", "content": f"Explain in two or three sentences what the module `{rel}` "
                                 f"does and when to use it.\n\n```python\n{source[:6000]}\n```"}],
    model=model, temperature=0, max_tokens=160)
page = f"## `{rel}`\n\n{reply.text.strip()}\n\n" + ("\n".join(api) if api else "_No public API._")
client.store_put(f"docgen:{batch}:doc:{rel}", page)
print(page)
