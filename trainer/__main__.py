"""``python -m trainer VERB [args]``: run the trainer's command ``VERB`` (``trainer.commands.VERB.main``).

Verbs are the modules of ``trainer.commands``, with hyphens or underscores alike (``train-or``, ``train_or``).
``--help`` lists them with the first line of each one's docstring, read without importing it (torch loads
only for the verb that is run).
"""
from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

from app.core.exit_codes import ExitCode
from trainer import commands

USAGE = "usage: python -m trainer VERB [args]  (python -m trainer VERB --help for its arguments)"


def verbs() -> dict[str, str]:
    """Each verb (hyphenated) and the first line of its command module's docstring, in name order."""
    found = {}
    for module in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        source = Path(commands.__path__[0], f"{module.name}.py").read_text(encoding="utf-8")
        doc = ast.get_docstring(ast.parse(source)) or ""
        found[module.name.replace("_", "-")] = doc.splitlines()[0] if doc else ""
    return found


def usage() -> str:
    """The top-level help: how to call, and the verbs with one line each."""
    table = verbs()
    width = max(map(len, table))
    return "\n".join([USAGE, "", "verbs:", *(f"  {verb:<{width}}  {line}" for verb, line in table.items())])


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``argv`` (``VERB [args]``) to the verb's ``main``; its exit code, or ``USAGE`` for an unknown verb."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return ExitCode.OK if argv else ExitCode.USAGE
    verb, rest = argv[0], argv[1:]
    if verb.replace("-", "_") not in {v.replace("-", "_") for v in verbs()}:
        print(f"error: unknown verb {verb!r} (one of: {', '.join(verbs())})", file=sys.stderr)
        return ExitCode.USAGE
    module = importlib.import_module(f"trainer.commands.{verb.replace('-', '_')}")
    return int(module.main(rest))


if __name__ == "__main__":
    sys.exit(main())
