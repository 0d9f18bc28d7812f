"""``fedguard data fetch`` and ``fedguard data list``."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from fedguard.data.cache import ENV_VAR, data_root
from fedguard.data.fetch import archive, cached, fetch

console = Console()


def fetch_command(name: str, directory: Path | None) -> None:
    item = archive(name)  # an unknown name fails before anything is created
    root = directory.expanduser() if directory else data_root()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(f"{name}", total=item.size)

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        path = fetch(name, root, report)
    console.print(f"{name}: verified (MD5 {item.md5}) and ready in {path}")


def list_command(directory: Path | None) -> None:
    root = directory.expanduser() if directory else data_root()
    table = Table(title=f"datasets in {root} (set {ENV_VAR} or --dir to change)")
    for col in ("name", "status", "size (MB)", "path"):
        table.add_column(col)
    for row in cached(root):
        size = int(row["bytes"]) / 1e6  # type: ignore[call-overload]
        table.add_row(str(row["name"]), str(row["status"]), f"{size:.1f}", str(row["path"]))
    console.print(table)
