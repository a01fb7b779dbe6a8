"""``scores.csv``: one row per instance, appended as instances finish and rewritten in canonical order at the
end, so an interrupted run resumes where it stopped and a finished file does not depend on scheduling.

Floats are written with ``repr`` (the shortest text that reads back to the same float64), so every column but
``seconds`` (a wall time) is bit-identical between runs of the same grid.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from .protocol import Instance, ModelKey

__all__ = ["COLUMNS", "ScoresFileError", "read_scores", "append_rows", "write_sorted", "row_instance"]

COLUMNS = ("program", "variant", "compile", "target", "activations", "dtype", "sigma", "seed", "score", "layers",
           "widest", "nnz", "seconds")


class ScoresFileError(ValueError):
    """A scores file that cannot be resumed (wrong header, or a damaged row before the last one)."""


def _format(value) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def _parse(fields: list) -> dict:
    if len(fields) != len(COLUMNS):
        raise ValueError(f"expected {len(COLUMNS)} fields, got {len(fields)}")
    row = dict(zip(COLUMNS, fields))
    for name in ("sigma", "score", "seconds"):
        row[name] = float(row[name])
    for name in ("seed", "layers", "widest", "nnz"):
        row[name] = int(row[name])
    row_instance(row)  # validates the coordinates
    return row


def row_instance(row: dict) -> Instance:
    key = ModelKey(row["program"], row["variant"], row["compile"], row["target"], row["activations"], row["dtype"])
    return Instance(key, float(row["sigma"]), int(row["seed"]))


def read_scores(path: Path) -> list:
    """The complete rows of ``path`` (none when it does not exist).  A damaged *last* line — cut off by an
    interruption, or unparsable — is removed from the file so that its instance is redone; damage anywhere
    else raises :class:`ScoresFileError`."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    if not text:
        return []
    lines = text.split("\n")
    complete = text.endswith("\n")
    if complete:
        lines.pop()  # the empty string after the final newline
    header = lines[0].split(",")
    if tuple(header) != COLUMNS:
        if len(lines) == 1 and not complete and ",".join(COLUMNS).startswith(lines[0]):
            path.write_text("")  # only a cut-off header was written
            return []
        raise ScoresFileError(f"{path}: header {lines[0]!r} is not the scores header {','.join(COLUMNS)!r}; "
                              "use another --out directory or remove the file")
    rows = []
    body = lines[1:]
    for number, line in enumerate(body, start=2):
        is_last = number == len(body) + 1
        try:
            if is_last and not complete:
                raise ValueError("the line is cut off (no final newline)")
            rows.append(_parse(next(csv.reader([line]))))
        except (ValueError, StopIteration) as error:
            if not is_last:
                raise ScoresFileError(f"{path}, line {number}: damaged row {line!r} ({error}); only the last "
                                      "line may be damaged by an interruption") from None
            kept = "\n".join(lines[:-1]) + "\n"
            path.write_text(kept)
    seen = set()
    for row in rows:
        instance = row_instance(row)
        if instance in seen:
            raise ScoresFileError(f"{path}: instance {instance.coordinates()} appears twice")
        seen.add(instance)
    return rows


def _lines(rows: list) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in rows:
        writer.writerow([_format(row[name]) for name in COLUMNS])
    return buffer.getvalue()


def append_rows(path: Path, rows: list) -> None:
    """Append rows (writing the header first for a new file) and flush them to disk."""
    path = Path(path)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a") as handle:
        if new:
            handle.write(",".join(COLUMNS) + "\n")
        handle.write(_lines(rows))
        handle.flush()
        os.fsync(handle.fileno())


def write_sorted(path: Path, rows: list) -> None:
    """Rewrite ``path`` with ``rows`` in canonical instance order (atomically: a temporary file, then rename)."""
    path = Path(path)
    ordered = sorted(rows, key=row_instance)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(",".join(COLUMNS) + "\n" + _lines(ordered))
    os.replace(temporary, path)
