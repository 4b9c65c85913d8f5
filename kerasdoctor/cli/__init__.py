"""The command line: the Typer app, its commands (one module per command group: diagnose.py,
fix.py, shard.py; common.py holds what they share) and the console script's main().
Parse, call the core, render, exit; heavy imports happen inside the commands."""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from kerasdoctor.cli.common import guard
from kerasdoctor.cli.diagnose import checks, diagnose, explain, print_checks, print_explain
from kerasdoctor.cli.fix import fix
from kerasdoctor.cli.shard import shard
from kerasdoctor.policy import EXIT_INTERRUPTED, EXIT_OK, EXIT_STDOUT_CLOSED

app = typer.Typer(
    name="kerasdoctor",
    help="Why does my Keras classifier predict only one class? Diagnose it, then fix it.",
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
# in this order in --help
app.command(context_settings={"allow_extra_args": True})(diagnose)  # Beam options after `--`
app.command("fix")(fix)
app.command("shard")(shard)
app.command()(checks)
app.command()(explain)


def _print_version() -> None:
    from kerasdoctor import __version__

    sys.stdout.write(f"kerasdoctor {__version__}\n")


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        _print_version()
        raise typer.Exit(EXIT_OK)


def _light_command(args: list[str]) -> Callable[[], None] | None:
    """The commands that only print what kerasdoctor knows, when given in their plain form."""
    if args == ["--version"]:
        return _print_version
    if args == ["checks"]:
        return print_checks
    if len(args) == 2 and args[0] == "explain" and not args[1].startswith("-"):
        return lambda: print_explain(args[1])
    return None


def main() -> None:
    """The console script. `checks`, `explain ID` and `--version` are answered here, the same
    as the app answers them: Typer (0.2x) converts every option value, even the unset --help,
    through a pydantic TypeAdapter, and importing pydantic would double their start-up time.
    Anything else, their --help included, goes to the Typer app.

    Ctrl-C anywhere ends with one line and exit 130 (kerasdoctor._signals says how); a reader
    that closes stdout early (`| head -1`) ends it with a quiet 1."""
    from kerasdoctor import _signals

    _signals.install()  # first: a ^C in the imports below must find it
    code = EXIT_OK
    try:
        try:
            light = _light_command(sys.argv[1:])
            if light is None:
                app()  # standalone: it ends in SystemExit
            else:
                with guard():
                    light()
        except typer.Exit as exc:
            code = exc.exit_code
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or EXIT_OK
            else:
                sys.stderr.write(f"{exc.code}\n")
                code = 1  # sys.exit("text"): the interpreter's own rule
        sys.stdout.flush()  # here, not at shutdown, where a closed pipe is a traceback
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED  # it did not pass through guard(): finish() writes the line
    except BrokenPipeError:
        _signals.quiet_stdout()
        code = code or EXIT_STDOUT_CLOSED
    _signals.finish(code)
