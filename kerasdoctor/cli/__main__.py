"""`python -m kerasdoctor.cli`: the console script, as tests and benchmarks run it."""

from __future__ import annotations

from kerasdoctor.cli import main

if __name__ == "__main__":
    main()
