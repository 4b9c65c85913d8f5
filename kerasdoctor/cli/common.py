"""What every command shares: failures mapped to exit codes, output writing, the progress bar.

Light to import (typer + stdlib): the bar (render.progress, rich) is imported only when shown.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from kerasdoctor.errors import InputError
from kerasdoctor.policy import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_STDOUT_CLOSED,
    EXIT_USAGE,
)


def error(msg: str) -> None:
    """One line on stderr, as every usage error is reported."""
    sys.stderr.write(f"kerasdoctor: error: {msg}\n")
    sys.stderr.flush()


@contextmanager
def guard() -> Iterator[None]:
    """Map failures to the contract's exit codes: 2 unusable input, 3 our own crash, 130 ^C,
    and a quiet 1 when stdout's reader has gone (`kerasdoctor checks | head -1`)."""
    from kerasdoctor import _signals

    try:
        yield
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except InputError as exc:
        error(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        _signals.settle()  # reached: the watcher (see main) need not deliver it again
        _signals.told()
        sys.stderr.write(_signals.MESSAGE)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except MemoryError:
        error("out of memory; try a smaller --batch-size or --sample N")
        raise typer.Exit(EXIT_USAGE) from None
    except Exception as exc:
        if isinstance(exc, BrokenPipeError) and _signals.stdout_is_broken():
            # the reader read what it wanted (`| head`): no word, as Unix tools do; 1, not 0,
            # so that `set -o pipefail` never takes a cut-off report for a passing one
            _signals.quiet_stdout()
            raise typer.Exit(EXIT_STDOUT_CLOSED) from None
        if os.environ.get("KERASDOCTOR_DEBUG"):
            raise
        text = " ".join(str(exc).split())[:400]
        sys.stderr.write(
            f"kerasdoctor: internal error: {type(exc).__name__}: {text} "
            "(set KERASDOCTOR_DEBUG=1 for the traceback)\n"
        )
        raise typer.Exit(EXIT_INTERNAL) from None


def write_output(text: str, output: Path | None) -> None:
    """Write to --output atomically (temp file + rename), or to stdout."""
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from kerasdoctor.io import atomic_write_text

    atomic_write_text(output, text)


def progress_enabled(fmt: str) -> bool:
    """A progress bar only for the table on a terminal: never in CI or for machine formats."""
    return fmt == "table" and sys.stderr.isatty() and not os.environ.get("CI")


@contextmanager
def progress(enabled: bool, label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A transient progress bar on stderr; yields its update(done, total), or None when off."""
    if not enabled:
        yield None
        return
    from kerasdoctor.render.progress import progress_bar

    with progress_bar(label) as update:
        yield update
