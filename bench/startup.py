"""Start-up time of the light commands, as a ratio to `python -c "import typer, rich"`.

    python bench/startup.py [--runs N] [--check]

`--help`, `checks`, `explain ID` and `--version` import neither numpy, TensorFlow, Keras,
scikit-learn nor pydantic (tests/test_startup.py asserts it); what is left is Python, Typer
and kerasdoctor's own light modules. Each command runs N times in a fresh interpreter,
interleaved with the baseline so that a busy machine slows both alike; the table gives the
median and the fastest wall time and the ratio of the medians. The target is 1.5x or less;
--check exits 1 when a command misses it.

Python's bytecode cache is on, in a temporary PYTHONPYCACHEPREFIX, as for an installed
package (pip compiles a wheel's modules when it installs it), even where the environment sets
PYTHONDONTWRITEBYTECODE; --no-bytecode-cache measures the compile-every-run case instead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

TARGET = 1.5
BASELINE = ("import typer, rich", [sys.executable, "-c", "import typer, rich"])
COMMANDS = [
    ("kerasdoctor --help", ["--help"]),
    ("kerasdoctor checks", ["checks"]),
    ("kerasdoctor explain missing-classes", ["explain", "missing-classes"]),
    ("kerasdoctor --version", ["--version"]),
]


def _time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--check", action="store_true", help=f"exit 1 above {TARGET}x")
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="compile every module on every run (PYTHONDONTWRITEBYTECODE=1)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ)
        if args.no_bytecode_cache:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = cache
        return _report(args, env)


def _report(args: argparse.Namespace, env: dict[str, str]) -> int:
    rows = [BASELINE] + [
        (name, [sys.executable, "-m", "kerasdoctor", *cli]) for name, cli in COMMANDS
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in rows}
    for _, argv in rows:  # warm the page cache and the bytecode cache once
        _time(argv, env)
    for _ in range(args.runs):
        for name, argv in rows:
            times[name].append(_time(argv, env))
    base = statistics.median(times[BASELINE[0]])
    print(f"{'command':<38} {'median':>8} {'fastest':>8} {'ratio':>6}")
    worst = 0.0
    for name, _ in rows:
        median = statistics.median(times[name])
        ratio = median / base
        if name != BASELINE[0]:
            worst = max(worst, ratio)
        print(
            f"{name:<38} {median * 1000:>6.0f}ms {min(times[name]) * 1000:>6.0f}ms {ratio:>5.2f}x"
        )
    cached = "off" if args.no_bytecode_cache else "on"
    print(
        f"target: {TARGET}x or less; worst {worst:.2f}x ({args.runs} runs each, "
        f"Python {sys.version.split()[0]}, bytecode cache {cached})"
    )
    return 1 if args.check and worst > TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
