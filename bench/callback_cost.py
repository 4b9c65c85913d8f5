"""What DoctorCallback costs per checked epoch, against a plain model.predict on the same data.

    python bench/callback_cost.py [N_VALIDATION]

Prints the median of 5 timings of each; the README quotes the figures.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def main(n: int) -> None:
    import keras

    from kerasdoctor.checks import every_epoch
    from kerasdoctor.core import diagnose_arrays

    rng = np.random.default_rng(0)
    x = rng.random((n, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, n)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")

    def plain() -> None:
        model.predict(x, batch_size=1024, verbose=0)

    def doctor() -> None:
        diagnose_arrays(model, x, y, only=every_epoch("single-label"))

    for fn in (plain, doctor):  # warm-up: tracing
        fn()
    t_plain = statistics.median(_time(plain) for _ in range(5))
    t_doc = statistics.median(_time(doctor) for _ in range(5))
    print(
        f"validation samples: {n}, small CNN (28x28x1, 10 classes), backend "
        f"{keras.backend.backend()}"
    )
    print(f"model.predict:            {t_plain:.3f} s")
    print(f"DoctorCallback per epoch: {t_doc:.3f} s  ({t_doc / t_plain:.2f}x predict)")


def _time(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
