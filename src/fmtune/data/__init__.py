"""Datasets: the IDX registry (Fashion-MNIST, MNIST, manifest-declared) and other sources (a folder
of class folders, an npz, a Python loader), all loaded into one ``Dataset`` type.

Light to import (numpy and pydantic): the client imports it for the registry's class names;
Pillow and TensorFlow are imported only by the functions that read images.
"""

from fmtune.data.checks import dataset_from_arrays
from fmtune.data.fingerprint import fingerprint
from fmtune.data.folder import FolderPlan, load_folder, plan_folder
from fmtune.data.idx import (
    IMAGE_MAGIC,
    KERAS_ORIGIN,
    LABEL_MAGIC,
    MNIST_NPZ_SHA256,
    keras_cache_dir,
    load,
    load_test,
    locate,
    read_idx,
)
from fmtune.data.loader import load_loader
from fmtune.data.loading import check_source, load_source
from fmtune.data.npz import load_npz
from fmtune.data.registry import _FILES, DATASETS, MANIFEST, NUM_CLASSES, TEST_FILES, resolve_spec
from fmtune.data.source import DataSourceConfig
from fmtune.data.splits import stratified_split
from fmtune.data.stream import Stream, folder_stream
from fmtune.data.types import Dataset, DatasetError, DatasetNotFoundError, DatasetSpec, Split

__all__ = [
    "DATASETS",
    "IMAGE_MAGIC",
    "KERAS_ORIGIN",
    "LABEL_MAGIC",
    "MANIFEST",
    "MNIST_NPZ_SHA256",
    "NUM_CLASSES",
    "TEST_FILES",
    "_FILES",
    "DataSourceConfig",
    "Dataset",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "FolderPlan",
    "Split",
    "Stream",
    "check_source",
    "dataset_from_arrays",
    "fingerprint",
    "folder_stream",
    "keras_cache_dir",
    "load",
    "load_folder",
    "load_loader",
    "load_npz",
    "load_source",
    "load_test",
    "locate",
    "plan_folder",
    "read_idx",
    "resolve_spec",
    "stratified_split",
]
