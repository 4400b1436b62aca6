"""What every command line of sen_infer shares: the parser, argument types, output and the error contract.

`python -m sen_infer` and `python -m sen_infer.cluster` both build on this module, so a bad argument or
a `SenInferError` reads the same in either: one line `error: ...` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from contextlib import contextmanager

from sen_infer.errors import EngineDirError, GalleryError, SenInferError, require_utf8

__all__ = ["Parser", "run", "int_at_least", "positive_int", "non_negative_int", "finite_float", "port",
           "print_json", "warnings_to_stderr", "add_engine_args", "open_retriever", "nobody_seen_hint"]


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: one line `error: ...`, exit 2 (no usage dump).

    A usage dump buries the one thing that is wrong; the line names it and points at --help.
    """

    def error(self, message: str):
        """Exit 2 with `error: <message> (see PROG --help)` on stderr.

        Args:
            message: argparse's description of what is wrong with the arguments.

        Raises:
            SystemExit: always, with code 2.
        """
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def run(parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse `argv` and run the chosen subcommand (its `fn` default) with the CLI's error contract.

    Only a `SenInferError` is bad input; it becomes one line `error: ...` (whitespace folded) and exit 2.
    A file the user may not read or write is one line and exit 2 too; Ctrl-C one line and exit 130; a
    closed output pipe ends quietly (exit 141). Anything else is a bug and keeps its traceback.

    Args:
        parser: a parser whose subcommands set `fn(args) -> int`.
        argv: the arguments (default: sys.argv[1:]).

    Returns:
        The subcommand's exit code, or 2 after a `SenInferError`.

    Raises:
        SystemExit: from argparse, for --help (0) or arguments it rejects (2).
    """
    args = parser.parse_args(argv)
    try:
        code = args.fn(args)
        sys.stdout.flush()  # here, so that a reader that went away is seen now, not at interpreter exit
        return code
    except SenInferError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `... --json | head`: the reader has what it wanted; end quietly, and keep Python's own flush at
        # exit from writing to the closed pipe again (the recipe of Python's signal module docs)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command its pipe closed
    except KeyboardInterrupt:
        print("interrupted: what was committed before is kept; the same command goes on from there",
              file=sys.stderr)
        return 130
    except PermissionError as e:
        print(f"error: permission denied: {e.filename or e}", file=sys.stderr)
        return 2


def int_at_least(text: str, low: int) -> int:
    """`text` as an int no smaller than `low`, so argparse rejects it with a message that says why.

    Args:
        text: the argument as typed.
        low: the smallest value allowed.

    Returns:
        The integer.

    Raises:
        argparse.ArgumentTypeError: not an integer, or below `low`.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, not {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type for counts that must be at least 1 (-k, --stride, ...).

    Raises:
        argparse.ArgumentTypeError: not an integer >= 1.
    """
    return int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type for counts where 0 means "none" (--workers).

    Raises:
        argparse.ArgumentTypeError: not an integer >= 0.
    """
    return int_at_least(text, 0)


def port(text: str) -> int:
    """argparse type for a TCP port; 0 asks the system for a free one.

    Raises:
        argparse.ArgumentTypeError: not an integer in 0-65535.
    """
    value = int_at_least(text, 0)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (0-65535)")
    return value


def _number(text: str) -> float:
    """`text` as a float, or the argparse error every number argument gives."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def finite_float(text: str) -> float:
    """argparse type for times and thresholds: nan and inf would poison comparisons and JSON.

    Raises:
        argparse.ArgumentTypeError: not a number, or not finite.
    """
    value = _number(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def unit_float(text: str) -> float:
    """argparse type for a score from 0 to 1 (a crop quality).

    Raises:
        argparse.ArgumentTypeError: not a number from 0 to 1.
    """
    value = _number(text)
    if not 0.0 <= value <= 1.0:  # nan fails this too
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, not {text}")
    return value


def cpu_share(text: str) -> float:
    """argparse type for CPUs a Ray actor or task reserves: a finite number >= 0 (fractions share a CPU).

    Raises:
        argparse.ArgumentTypeError: not a number, negative, or not finite.
    """
    value = _number(text)
    if not (math.isfinite(value) and value >= 0.0):
        raise argparse.ArgumentTypeError(f"must be a number of CPUs >= 0, not {text}")
    return value


def print_json(obj) -> None:
    """Print `obj` as one line of strict JSON (nan/inf raise rather than print what parsers reject).

    Args:
        obj: anything `json.dumps` takes.

    Raises:
        ValueError: `obj` holds a float that is not finite.
    """
    print(json.dumps(obj, allow_nan=False))


@contextmanager
def warnings_to_stderr():
    """Collect the warnings raised in the block and print each as `warning: ...` on stderr after it.

    The SDK warns about galleries that still work (a stale index, superseded files); the CLI shows those
    as plain lines after the work, not as Python's file:line warnings. If the block raises, nothing is
    printed: the error line is what matters then.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """The options every command over an engine and gallery takes, defined once so they read alike.

    Args:
        p: the subcommand's parser.
    """
    p.add_argument("--engine", required=True, help="engine dir (python -m export.onnx)")
    p.add_argument("--gallery", help="gallery dir (default: ENGINE/gallery)")
    p.add_argument("--backend", default="auto",
                   help="auto, tensorrt-int8, tensorrt, onnx-cuda, onnx-cpu-int8, onnx-cpu")
    p.add_argument("--skip-verify", action="store_true",
                   help="do not check the engine files' sha256 against manifest.json (for people who know why)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def open_retriever(args):
    """The `Retriever` that `add_engine_args`' options name, after their paths are checked to be UTF-8.

    Args:
        args: parsed arguments with engine, gallery, backend and skip_verify.

    Returns:
        A `sen_infer.query.Retriever`.

    Raises:
        EngineDirError: the engine path is not UTF-8 (or the SDK's own checks of the engine dir).
        GalleryError: the gallery path is not UTF-8 (or the SDK's own checks of the gallery).
    """
    from sen_infer.query import Retriever

    require_utf8(args.engine, "--engine path", EngineDirError)
    if args.gallery is not None:
        require_utf8(args.gallery, "--gallery path", GalleryError)
    return Retriever(args.engine, args.gallery, args.backend, verify=not args.skip_verify)


def nobody_seen_hint(report, videos: int, detector: str) -> str | None:
    """The line to print when videos were read but nothing was stored: the detector saw no one.

    "0 rows added" alone sends a user looking at the gallery or the engine; the cause is nearly always the
    detector against the footage (cartoon people are invisible to a neural detector, distant ones to an
    untiled one), so the line names the detector and the usual fixes.

    Args:
        report: the run's `IngestReport` (rows added, rows already there, unreadable and failed inputs).
        videos: videos the run was given.
        detector: the `--detector` value the run used.

    Returns:
        The note, or None when something was stored, found already there (a rerun stores nothing,
        rightly), or no video was read.
    """
    read = videos - len(report.unreadable) - len(report.failed)
    if report.added or report.skipped_existing or read <= 0:
        return None
    return (f"note: no person was detected in {read} video{'s' if read != 1 else ''} with "
            f"--detector {detector}: for synthetic footage (the demo's) use --detector mog2-split; for small, "
            f"distant people a tiled detector (--detector ssdlite:2x2)")
