"""Data sources: what DATA is decides how its rows reach the probe, one batch at a time.

.npz (the contract's format), an .npy pair (x.npy with --labels y.npy, read in row chunks so
data larger than memory streams), .csv / .parquet tables (--label-column, feature columns),
a folder of class subfolders of images (keras.utils.image_dataset_from_directory's layout),
a directory written by tf.data.Dataset.save, and a segmentation folder (images/ + masks/,
kerasdoctor.seg_folder, issue 16). A source is bound to a model (inputs matched,
shapes checked) and then yields (inputs, labels, row ids) batches in one pass; labels from
every source go through load.decode_labels. Unusable data raises InputError, one line.

How DATA is read comes as one dataspec.DataSpec. The interface (Source, Bound, open_source,
data_kind, read_labels, OPTION_KINDS and the refused-data error) is sources.interface; each
kind is read by a module of its own: arrays (.npz), npy, table (.csv and .parquet), images,
tfdata. This package re-exports their names.
"""

from __future__ import annotations

from kerasdoctor.sources.arrays import ArraySource
from kerasdoctor.sources.images import (
    ImageFolderSource,
    ImageRows,
    _list_images,
    load_image,
    resize_bilinear,
)
from kerasdoctor.sources.interface import (
    _KIND_NAMES,
    IMAGE_FORMATS,
    OPTION_KINDS,
    PARQUET_SUFFIXES,
    TABLE_SUFFIXES,
    ArrayBound,
    Bound,
    Chunk,
    LabelStream,
    Source,
    StreamBound,
    _kind,
    _seg_kind,
    _single_input,
    data_kind,
    open_source,
    parse_columns,
    parse_image_size,
    read_labels,
    rebatch,
    refuse_options,
    refused_option,
)
from kerasdoctor.sources.npy import NpyRows, NpySource
from kerasdoctor.sources.table import (
    LABEL_CHUNK,
    LABEL_COLUMN_NAMES,
    MISSING_CELLS,
    ParquetSource,
    TableSource,
    _choose_columns,
    _decode_label_values,
    _table_input,
)
from kerasdoctor.sources.tfdata import TFDataSource, _describe_spec, _tensorflow, is_tfdata_dir

__all__ = [
    "IMAGE_FORMATS",
    "LABEL_CHUNK",
    "LABEL_COLUMN_NAMES",
    "MISSING_CELLS",
    "OPTION_KINDS",
    "PARQUET_SUFFIXES",
    "TABLE_SUFFIXES",
    "ArrayBound",
    "ArraySource",
    "Bound",
    "Chunk",
    "ImageFolderSource",
    "ImageRows",
    "LabelStream",
    "NpyRows",
    "NpySource",
    "ParquetSource",
    "Source",
    "StreamBound",
    "TFDataSource",
    "TableSource",
    "data_kind",
    "is_tfdata_dir",
    "load_image",
    "open_source",
    "parse_columns",
    "parse_image_size",
    "read_labels",
    "rebatch",
    "refuse_options",
    "refused_option",
    "resize_bilinear",
    # private, kept importable from here for the modules that used them before the split
    "_KIND_NAMES",
    "_choose_columns",
    "_decode_label_values",
    "_describe_spec",
    "_kind",
    "_list_images",
    "_seg_kind",
    "_single_input",
    "_table_input",
    "_tensorflow",
]
