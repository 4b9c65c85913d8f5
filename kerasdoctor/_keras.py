"""Imports Keras (and its backend) once, quietly: TensorFlow's C++ start-up chatter is muted."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

_KERAS: Any = None


@contextlib.contextmanager
def _quiet_fd2() -> Iterator[None]:
    """Silence file descriptor 2 (where TF's C++ logging writes) for the duration."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (e.g. some notebooks): nothing to mute
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def keras() -> Any:
    """Return the keras module, importing it (and TensorFlow) on first use."""
    global _KERAS
    if _KERAS is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import warnings

        with _quiet_fd2(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import keras as _k

            if _k.backend.backend() == "tensorflow" or _tensorflow_installed():
                # On JAX or PyTorch too: Keras imports TensorFlow lazily whenever it is
                # installed (to serialise layer configs), so import it here, muted, or its C++
                # start-up chatter lands on stderr in the middle of a run.
                import tensorflow as tf

                tf.get_logger().setLevel("ERROR")
                # the CUDA platform initialises on first use, not on import: do it here, muted,
                # or "failed call to cuInit" reaches stderr on a machine without a GPU
                with contextlib.suppress(Exception):  # no device list: the run says what it needs
                    tf.config.list_physical_devices()
                try:
                    import absl.logging

                    absl.logging.set_verbosity(absl.logging.ERROR)
                except ImportError:
                    pass
        _KERAS = _k
    return _KERAS


def _tensorflow_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None
