"""kerasdoctor: why does my Keras classifier predict only one class?

Public API: ``diagnose(model, x, y) -> Report``, ``DoctorCallback``, ``Report``, ``Finding``,
``Severity``; ``kerasdoctor.testing.assert_healthy`` for pytest. Importing this package is
cheap; TensorFlow is imported on the first diagnosis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kerasdoctor.errors import InputError
from kerasdoctor.findings import CheckError, Finding, Fix, Kind, Report, Severity

__version__ = "0.1.0"

__all__ = [
    "CheckError",
    "DoctorCallback",
    "Finding",
    "Fix",
    "InputError",
    "Kind",
    "Report",
    "Severity",
    "__version__",
    "diagnose",
]

if TYPE_CHECKING:
    import numpy as np

    from kerasdoctor.callback import DoctorCallback


def diagnose(model: Any, x: Any, y: np.ndarray | Any, **options: Any) -> Report:
    """Diagnose a Keras classifier on (x, y); the same checks and ranking as the CLI.

    ``model`` is a Keras model or a path (.keras, .h5, SavedModel directory); ``x`` an array,
    or a dict (by input name) or list of arrays for a multi-input model; ``y`` labels in any
    encoding of the contract. Options: batch_size, sample, seed, class_names, thresholds,
    ignore, output_name, unsafe (see kerasdoctor.core.Options).

    >>> import numpy as np, kerasdoctor
    >>> d = np.load("fixtures/collapsed.npz")
    >>> report = kerasdoctor.diagnose("fixtures/collapsed.keras", d["x"], d["y"])
    >>> report.verdict
    'sick'
    >>> "missing-classes" in [f.id for f in report.findings]
    True
    """
    from kerasdoctor.core import diagnose_arrays

    return diagnose_arrays(model, x, y, **options)


def __getattr__(name: str) -> Any:
    # DoctorCallback subclasses keras.callbacks.Callback: import Keras only when asked for it.
    if name == "DoctorCallback":
        from kerasdoctor.callback import DoctorCallback

        return DoctorCallback
    raise AttributeError(f"module 'kerasdoctor' has no attribute {name!r}")
