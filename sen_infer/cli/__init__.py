"""`python -m sen_infer ingest|query|info|...`: the command line over the SDK."""

from sen_infer.cli.main import main

__all__ = ["main"]
