"""`python -m sen_infer ingest|query|info|...`: the parser made of one module per command.

Each command module of `sen_infer.cli` has `add_parser(sub)` (its arguments and help) and `run(args)` (what
it does, returning the exit code). Errors are one line on stderr (`error: ...`) and exit 2: every error on
bad input is a `SenInferError` raised by the SDK (or an argument rejected by `sen_infer.cli.args`), and
the CLI catches exactly that. Anything else that escapes is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import sys

from sen_infer.cli import compact, info, ingest, keys, link, query, serve, timeline, tune_index
from sen_infer.cli.args import Parser, run

# In the order `--help` lists them.
COMMANDS = (ingest, link, timeline, query, tune_index, compact, serve, keys, info)


def build_parser() -> argparse.ArgumentParser:
    """The `python -m sen_infer` parser: each command's own parser, set to run that command.

    Returns:
        A parser for `sen_infer.cli.args.run`.
    """
    ap = Parser(prog="python -m sen_infer", description="Text-based person search over a gallery.")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub).set_defaults(fn=command.run)
    return ap


def main(argv=None) -> int:
    """Run the command line (what `python -m sen_infer` calls).

    Args:
        argv: the arguments (default: sys.argv[1:]).

    Returns:
        The exit code: 0 done, 1 done with problems (the command says which), 2 bad input.
    """
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
