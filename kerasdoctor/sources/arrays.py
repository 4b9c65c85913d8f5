"""An .npz (the contract's format, read by load.read_npz) or the library API's in-memory
(x, y): arrays bound to the model's inputs by name or order."""

from __future__ import annotations

from kerasdoctor.load import LoadedModel, RawData, bind_inputs
from kerasdoctor.sources.interface import ArrayBound, Bound, Source


class ArraySource(Source):
    """In-memory arrays: an .npz read by load.read_npz, or the library API's (x, y)."""

    kind = "npz"

    def __init__(self, raw: RawData) -> None:
        self.raw = raw
        self.path = raw.path

    def bind(self, lm: LoadedModel) -> Bound:
        return ArrayBound(self.raw.path, bind_inputs(self.raw, lm), self.raw.labels)
