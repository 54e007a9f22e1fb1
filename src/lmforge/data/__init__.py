"""Read training data files and normalise their records into lmforge's schemas."""

from lmforge.data.loader import Loaded, detect_schema, load_records
from lmforge.data.readers import SUPPORTED_EXTENSIONS, DataError, RawRecord, expand_paths, read_raw
from lmforge.data.schemas import SCHEMAS, normalize

__all__ = [
    "SCHEMAS",
    "SUPPORTED_EXTENSIONS",
    "DataError",
    "Loaded",
    "detect_schema",
    "RawRecord",
    "expand_paths",
    "load_records",
    "normalize",
    "read_raw",
]
