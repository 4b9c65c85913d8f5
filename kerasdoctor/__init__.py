"""kerasdoctor: why does my Keras classifier predict only one class?

Public API: ``diagnose(model, x, y) -> Report``, ``Report``, ``Finding``, ``Severity``.
Importing this package is cheap; TensorFlow is imported on the first diagnosis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kerasdoctor.errors import InputError
from kerasdoctor.findings import CheckError, Finding, Fix, Kind, Report, Severity

__version__ = "0.1.0"

__all__ = [
    "CheckError",
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


def diagnose(model: Any, x: Any, y: np.ndarray | Any, **options: Any) -> Report:
    """Diagnose a Keras classifier on (x, y); the same checks and ranking as the CLI.

    ``model`` is a Keras model or a path; ``x`` an array, or a dict/list of arrays for a
    multi-input model; ``y`` labels in any encoding of the contract.

    >>> report = kerasdoctor.diagnose("fixtures/healthy.keras", x, y)  # doctest: +SKIP
    >>> report.verdict, [f.id for f in report.findings]  # doctest: +SKIP
    """
    from kerasdoctor.core import diagnose_arrays

    return diagnose_arrays(model, x, y, **options)
