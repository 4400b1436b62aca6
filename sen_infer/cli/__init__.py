"""`python -m sen_infer ingest|query|info|...`: the command line over the SDK.

`main` runs it; `sen_infer.cli.args` holds what every command line shares (also `python -m
sen_infer.cluster`); each command is its own module (`ingest`, `link`, `timeline`, `query`, `tune_index`,
`serve`, `keys`, `info`) with `add_parser(sub)` and `run(args)`; `sheet` draws query contact sheets.
"""

from sen_infer.cli.main import main

__all__ = ["main"]
