"""`python -m kerasdoctor`: the same CLI as the `kerasdoctor` command."""

from __future__ import annotations


def main() -> None:
    """The CLI, with kerasdoctor's Ctrl-C handling in place before Typer and the CLI import:
    as an entry point (`kerasdoctor.__main__:main`) it leaves a ^C only the interpreter's own
    start-up and the package's light __init__ to land in unhandled."""
    from kerasdoctor import _signals
    from kerasdoctor.policy import EXIT_INTERRUPTED  # light: loaded by _signals already

    _signals.install()
    try:
        from kerasdoctor.cli import main as cli_main
    except KeyboardInterrupt:
        _signals.finish(EXIT_INTERRUPTED)
    cli_main()


if __name__ == "__main__":
    main()
