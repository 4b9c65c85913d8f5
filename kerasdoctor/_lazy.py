"""numpy, imported on first use: the check modules hold their specs next to their code, and
`kerasdoctor checks` / `explain ID` read the specs without paying for numpy's import.

    from kerasdoctor._lazy import numpy as np   # in a check module, instead of import numpy

Type checkers see the real module; at run time `np` is a proxy until its first attribute
access, which imports numpy and from then on holds numpy's own attributes.
"""

from __future__ import annotations

import importlib
import types
from typing import TYPE_CHECKING, Any


class LazyModule(types.ModuleType):
    """A module imported on the first access to one of its attributes. Unlike
    importlib.util.LazyLoader it puts nothing in sys.modules before that access."""

    def __getattr__(self, attr: str) -> Any:  # only called for names not yet copied in
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)
        return getattr(module, attr)


if TYPE_CHECKING:
    import numpy as numpy
else:
    numpy = LazyModule("numpy")
