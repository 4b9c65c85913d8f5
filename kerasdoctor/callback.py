"""DoctorCallback: the cheap diagnosis at the end of training epochs, to catch a collapse early.

Cost per checked epoch: one prediction pass over the validation data (the same single pass
`diagnose` makes, with the activation taps), plus the checks that need no second pass.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from kerasdoctor._keras import keras
from kerasdoctor.findings import Report, Severity

# Checks that need nothing beyond the single pass and the weights (no re-run on a sample).
CHEAP_CHECKS = frozenset({
    "prediction-collapse", "missing-classes", "low-recall", "constant-output",
    "class-imbalance", "nonfinite-inputs", "nonfinite-weights", "single-unit-softmax",
    "output-activation", "output-units-mismatch", "dead-units", "input-scale",
    "input-scale-mismatch",
})
# A collapsed epoch: the predictions lost classes (an error-level symptom of these).
COLLAPSE_IDS = ("prediction-collapse", "missing-classes", "constant-output")


def _stderr(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def _base() -> type:
    return keras().callbacks.Callback


class DoctorCallback(_base()):  # type: ignore[misc]
    """Run kerasdoctor's prediction checks on validation data at the end of epochs.

    Parameters
    ----------
    validation_data: ``(x, y)``; ``x`` an array, or a list/dict of arrays for several inputs.
    every: check every N-th epoch (1 = each epoch).
    on_collapse: ``"warn"`` logs the finding; ``"stop"`` also stops training once
        ``patience`` checked epochs in a row have collapsed.
    patience: collapsed checked epochs in a row before stopping.
    log: where messages go (default: standard error).

    Adds to ``logs`` (so they reach History and TensorBoard): ``kd_balanced_accuracy``,
    ``kd_missing_classes``, ``kd_dominant_share`` and ``kd_collapsed`` (0 or 1).

    >>> model.fit(x, y, epochs=20, callbacks=[DoctorCallback((x_val, y_val),
    ...           on_collapse="stop", patience=2)])  # doctest: +SKIP
    """

    def __init__(
        self,
        validation_data: tuple[Any, Any],
        every: int = 1,
        on_collapse: str = "warn",
        patience: int = 2,
        class_names: Sequence[str] | None = None,
        log: Callable[[str], None] = _stderr,
        batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if on_collapse not in ("warn", "stop"):
            raise ValueError("on_collapse must be 'warn' or 'stop'")
        if every < 1 or patience < 1:
            raise ValueError("every and patience must be >= 1")
        self.x, self.y = validation_data
        self.every = every
        self.on_collapse = on_collapse
        self.patience = patience
        self.class_names = class_names
        self.log = log
        self.batch_size = batch_size
        self.collapsed_epochs = 0
        self.stopped_epoch: int | None = None
        self.reports: dict[int, Report] = {}
        self.seconds: list[float] = []  # wall time of each check, for the cost figure

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if (epoch + 1) % self.every:
            return
        from kerasdoctor.core import diagnose_arrays

        start = time.perf_counter()
        report = diagnose_arrays(self.model, self.x, self.y, only=CHEAP_CHECKS,
                                 class_names=self.class_names, batch_size=self.batch_size)
        self.seconds.append(time.perf_counter() - start)
        self.reports[epoch] = report
        figures = epoch_figures(report)
        if logs is not None:
            logs.update(figures)
        if figures["kd_collapsed"]:
            self.collapsed_epochs += 1
            self.log(describe(epoch, report))
            if self.on_collapse == "stop" and self.collapsed_epochs >= self.patience:
                self.model.stop_training = True
                self.stopped_epoch = epoch
                self.log(f"kerasdoctor: stopping training after {self.collapsed_epochs} "
                         f"collapsed epoch(s) in a row (patience {self.patience})")
        else:
            self.collapsed_epochs = 0


def epoch_figures(report: Report) -> dict[str, float]:
    """The numbers the callback adds to `logs`."""
    per_class = report.metrics["per_class"]
    missing = sum(1 for c in per_class if c["support"] > 0 and c["predicted"] == 0)
    n = max(1, sum(c["predicted"] for c in per_class))
    dominant = max(c["predicted"] for c in per_class) / n
    collapsed = any(
        f.id in COLLAPSE_IDS and f.severity is Severity.ERROR for f in report.findings
    )
    return {
        "kd_balanced_accuracy": float(report.metrics["balanced_accuracy"] or 0.0),
        "kd_missing_classes": float(missing),
        "kd_dominant_share": float(dominant),
        "kd_collapsed": 1.0 if collapsed else 0.0,
    }


def describe(epoch: int, report: Report) -> str:
    """One log line: the symptom, which classes vanished, and the cause when known."""
    parts = [f"kerasdoctor: epoch {epoch + 1}:"]
    for f in report.symptoms:
        if f.severity is Severity.ERROR:
            parts.append(f"{f.id}: {f.title};")
    root = report.root_cause
    if root is not None:
        parts.append(f"most likely cause: {root.id}: {root.title}")
        fix = next((fx.command for fx in root.fixes if fx.command), None)
        if fix:
            parts.append(f"(fix: {fix})")
    return " ".join(parts)
