"""Ctrl-C and closed pipes for the command line: one line and exit 130, whenever ^C lands.

Python's own SIGINT handling loses a ^C, or turns it into a death by SIGINT (exit status -2),
in ways a `try/except KeyboardInterrupt` around the command cannot see:

- before the command's `except` is entered (Typer's option parsing, the imports on the way)
  Typer turns the KeyboardInterrupt into exit 130 without a word;
- C code may consume the pending signal without ever running the Python handler, or run the
  handler where its exception can only be printed (a garbage-collector callback such as
  jax's, a `__del__`): the run then carries on and writes its report;
- a KeyboardInterrupt that escapes code run by exec() of a string (dataclasses and
  namedtuple build their methods so, at import) marks the interpreter, and under
  `python -m` CPython then kills itself with SIGINT at exit, whatever code it exits with;
- at shutdown the interpreter puts SIGINT back to its default action before it tears the
  modules down (a second or two with TensorFlow loaded): a ^C then kills the process;
- a KeyboardInterrupt raised in Python code that a native module's initialisation calls can
  abort the process (jaxlib's bindings, which `import keras` loads, do: status -6 or -11).

So install() puts in a handler that raises Interrupted, a KeyboardInterrupt subclass: every
`except KeyboardInterrupt` catches it, and CPython's mark, which tests the exact type, is not
set by it. The handler holds it back while a native module initialises. A thread learns of
every SIGINT from the wakeup file descriptor, which the C-level handler writes before anything
can consume the signal. Until the exception reaches the command's guard() or main()
(settle()), the thread delivers it again every RETRY_S, and Python's printing of the copies
that land where they cannot propagate is silenced. If the process is still alive DEADLINE_S
after the first ^C, the thread writes the line and ends the process with 130 (a last resort:
it skips every clean-up). finish() sets the exit code (130 after a ^C) and ignores SIGINT
from there on, so the teardown cannot turn a decided outcome into a death by signal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any, NoReturn

from kerasdoctor.policy import EXIT_INTERRUPTED

RETRY_S = 0.5  # a ^C whose exception has not reached guard()/main() by then is delivered again
DEADLINE_S = 15.0  # after the first ^C, the longest the process may go on living

MESSAGE = "kerasdoctor: interrupted\n"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, as kerasdoctor's handler raises it."""


class _State:
    installed = False
    hit: float | None = None  # time.monotonic() of the first SIGINT
    settled = False  # the ^C reached guard() or main(): nothing to re-deliver
    told = False  # the one line was written
    watching = False  # the watcher thread runs (not on Windows)


_state = _State()


def install() -> None:
    """Take over SIGINT for the command line (main thread only; idempotent)."""
    if _state.installed or threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, _on_sigint)
    read_fd, write_fd = os.pipe()
    try:
        os.set_blocking(write_fd, False)  # the C handler must never block on it
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except (AttributeError, ValueError, OSError):  # Windows: the handler alone raises
        os.close(read_fd)
        os.close(write_fd)
    else:
        threading.Thread(
            target=_watch, args=(read_fd,), name="kerasdoctor-sigint", daemon=True
        ).start()
        _state.watching = True
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_forget_in_child)
    previous_hook = sys.unraisablehook

    def unraisable(info: Any) -> None:
        # our exception, raised where Python can only print it (a gc callback, __del__): say
        # nothing, the watcher delivers it again
        if isinstance(info.exc_value, KeyboardInterrupt) and _state.hit is not None:
            return
        previous_hook(info)

    sys.unraisablehook = unraisable
    _state.installed = True


def _forget_in_child() -> None:
    """A forked child has no watcher: its ^C must not land in the parent's pipe."""
    _state.watching = False
    with contextlib.suppress(ValueError):  # forked from another thread: the fd stays
        signal.set_wakeup_fd(-1)


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _note_hit()
    if _state.watching and _in_extension_init(frame):
        return  # the watcher delivers it again, once the native module is in place
    raise Interrupted


def _in_extension_init(frame: FrameType | None) -> bool:
    """Whether Python code is running on behalf of a native module's initialisation.

    An exception raised there can end the whole process: jaxlib's nanobind bindings, which
    `import keras` loads, call Python while building their enums and abort() (exit status
    -6, or -11) when that call raises. The import machinery's frames show it."""
    import _imp

    native = (_imp.create_dynamic, _imp.exec_dynamic)
    while frame is not None:
        if frame.f_code.co_name == "_call_with_frames_removed" and any(
            frame.f_locals.get("f") is fn for fn in native
        ):
            return True
        frame = frame.f_back
    return False


def _note_hit() -> None:
    if _state.hit is None:
        _state.hit = time.monotonic()


def _watch(read_fd: int) -> None:
    try:
        while signal.SIGINT not in os.read(read_fd, 512):
            pass
    except OSError:
        return
    _note_hit()
    assert _state.hit is not None
    tries = 0
    while True:
        time.sleep(RETRY_S)
        if time.monotonic() - _state.hit > DEADLINE_S:
            tell()
            os._exit(EXIT_INTERRUPTED)
        if _state.settled:
            continue
        tries += 1
        if tries % 4:  # runs the handler at the main thread's next bytecode
            import _thread

            _thread.interrupt_main(signal.SIGINT)
        else:  # now and then a real signal, which also ends a blocking call (a sleep)
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)


def interrupted() -> bool:
    """Whether a SIGINT arrived since install()."""
    return _state.hit is not None


def settle() -> None:
    """The KeyboardInterrupt reached the code that reports it: stop re-delivering it."""
    _state.settled = True


def tell() -> None:
    """Write the one line (once)."""
    if _state.told:
        return
    _state.told = True
    try:
        sys.stderr.write(MESSAGE)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def told() -> None:
    """guard() wrote the line itself."""
    _state.told = True


def quiet_stdout() -> None:
    """stdout's reader went away: send what is left to /dev/null, so no flush fails again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def stdout_is_broken() -> bool:
    """Whether stdout is a pipe whose reader has closed it."""
    import select

    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):
        return False
    try:
        poller = select.poll()
    except AttributeError:  # no poll() on this platform
        return True
    poller.register(fd, select.POLLOUT)
    return any(ev & select.POLLERR for _, ev in poller.poll(0))


def finish(code: int) -> NoReturn:
    """Exit with `code`, or with 130 and the line after a ^C; ignore SIGINT from here on."""
    if _state.installed:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _state.settled = True
    if _state.hit is not None:
        tell()
        code = EXIT_INTERRUPTED
    sys.exit(code)
