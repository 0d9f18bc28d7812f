"""The on-disk format of Hugging Face ``datasets`` (``Dataset.save_to_disk``), read with pyarrow.

``save_to_disk`` writes ``state.json`` (its ``_data_files`` list the shards) and Arrow IPC
*stream* files ``data-XXXXX-of-NNNNN.arrow``; a ``DatasetDict`` writes one such folder per split.
Reading them needs pyarrow only — the ``datasets`` library is not imported — and columns are chosen
exactly as for Parquet (feature, label and client-id columns).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fedguard.data.parquet import ParquetDataset
from fedguard.errors import ConfigError


@dataclass(frozen=True)
class HuggingFaceDiskDataset(ParquetDataset):
    """A folder written by ``datasets.Dataset.save_to_disk`` (one split); parameters as
    ``parquet``, with ``path`` the folder holding ``state.json``."""

    def read_table(self, path: Path):
        import pyarrow as pa

        state_file = path / "state.json"
        try:
            state = json.loads(state_file.read_text())
            files = [path / f["filename"] for f in state["_data_files"]]
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(
                f"dataset.path {self.path!r} is not a folder written by Hugging Face "
                "save_to_disk (no readable state.json listing _data_files); for a DatasetDict "
                "point at one split's folder."
            ) from None
        tables = []
        for file in files:
            if file.resolve().parent != path.resolve():
                raise ConfigError(
                    f"dataset.path {self.path!r}: state.json names a file outside it."
                )
            try:
                with pa.memory_map(str(file)) as source:
                    tables.append(pa.ipc.open_stream(source).read_all())
            except (pa.ArrowException, OSError) as exc:
                raise ConfigError(
                    f"dataset file {file} is not a readable Arrow stream ({exc})."
                ) from None
        if not tables:
            raise ConfigError(f"dataset.path {self.path!r} lists no data files.")
        return pa.concat_tables(tables)
