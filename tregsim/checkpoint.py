"""Checkpoint folders: finished chunks on disk, so an interrupted run resumes where it stopped.

Layout of an output folder ``OUT`` (see ``docs/parallel.md``)::

    OUT/manifest.json                 written by the command when it finishes
    OUT/chunks/identity.json          tregsim.io.identity(manifest) of the run that owns OUT
    OUT/chunks[/<stage>]/plan.json    n_items, chunk_size and mode of one chunk loop
    OUT/chunks[/<stage>]/<start>-<stop>.npz   result of items [start, stop), written atomically

:func:`prepare_output_dir` is called by a command before any work: it refuses a folder that
holds results of a different run (other command, seed, inputs or settings) unless
``overwrite=True``. :class:`ChunkStore` reads and writes the chunk files of one loop; it is
used by :func:`tregsim.parallel.run_chunks`.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np

from tregsim import io
from tregsim.errors import ArgumentError, OutputFolderError

CHUNKS = "chunks"
IDENTITY = "identity.json"
PLAN = "plan.json"
SCHEMA_VERSION = 1


def _normalise(obj: object) -> object:
    """JSON round trip, so an identity compares equal to its stored copy (tuples → lists …)."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _short(value: object) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def describe_difference(old: dict, new: dict, prefix: str = "") -> str:
    """Name the fields that differ between two identities, e.g. ``"seed 1 vs 2"``.

    Nested dicts (``inputs``, ``settings``) are compared key by key, so the message names
    ``settings.n_patients 100 vs 200`` rather than the whole settings block.
    """
    parts = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if a == b:
            continue
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            parts.append(describe_difference(a, b, prefix=name + "."))
        else:
            parts.append(f"{name} {_short(a)} vs {_short(b)}")
    return ", ".join(p for p in parts if p)


def _check_identity(out: Path, stored: dict | None, new: dict) -> None:
    if stored is None or stored == new:
        return
    diff = describe_difference(stored, new) or "different identity"
    raise OutputFolderError(
        f"was written by a different run ({diff})",
        file=out,
        fix="use --overwrite to discard it, or choose another --out folder",
    )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise OutputFolderError(
            f"cannot read {path.name}: {e}",
            file=path,
            fix="use --overwrite to start this folder afresh, or choose another --out folder",
        ) from e


def prepare_output_dir(out_dir: str | os.PathLike, manifest: dict, overwrite: bool = False) -> Path:
    """Make ``out_dir`` ready for the run described by ``manifest``; call before any work.

    Parameters
    ----------
    out_dir : output folder (created if missing).
    manifest : from :func:`tregsim.io.build_manifest`; its :func:`tregsim.io.identity`
        (command, seed, input hashes, settings) must equal that of whatever the folder holds.
    overwrite : if True, a folder of a different run is accepted: its checkpoint chunks and
        ``manifest.json`` are deleted (other files are left for the command to overwrite).

    Returns
    -------
    The output folder as a ``Path``. ``out_dir/chunks/identity.json`` now records the identity,
    so :func:`tregsim.parallel.run_chunks` can resume into ``out_dir``.

    Raises
    ------
    OutputFolderError : the folder holds chunks or a ``manifest.json`` of a different run and
        ``overwrite`` is False, or ``out_dir`` is an existing file.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputFolderError(
            "exists and is not a folder", file=out, fix="choose another --out folder"
        )
    new = _normalise(io.identity(manifest))
    chunks = out / CHUNKS
    id_path = chunks / IDENTITY
    man_path = out / io.MANIFEST
    if not overwrite:
        if id_path.exists():
            _check_identity(out, _read_json(id_path).get("identity"), new)
        if man_path.exists():
            _check_identity(out, _normalise(io.identity(_read_json(man_path))), new)
    else:
        # The old manifest describes results this run replaces; keeping it would make the
        # resume check of this very run fail if it is interrupted before writing its own.
        if chunks.exists():
            shutil.rmtree(chunks)
        man_path.unlink(missing_ok=True)
    chunks.mkdir(parents=True, exist_ok=True)
    if not id_path.exists() or overwrite:
        io.write_json(id_path, {"schema_version": SCHEMA_VERSION, "identity": new})
    return out


class ChunkStore:
    """The chunk files of one chunk loop inside a prepared output folder.

    Parameters
    ----------
    out_dir : a folder prepared by :func:`prepare_output_dir`.
    n_items, chunk_size : the chunk plan; chunk ``i`` holds items
        ``[i * chunk_size, min((i + 1) * chunk_size, n_items))``.
    mode : ``"concat"`` or ``"combine"`` (what the chunk files contain).
    stage : optional sub-folder name, for commands that run several chunk loops into one
        output folder (e.g. one per sample size).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        n_items: int,
        chunk_size: int,
        mode: str,
        stage: str | None = None,
    ):
        root = Path(out_dir) / CHUNKS
        if not (root / IDENTITY).exists():
            raise ArgumentError(
                f"{root / IDENTITY} is missing, so resumed chunks could not be matched to this run",
                field="out_dir",
                fix="call tregsim.checkpoint.prepare_output_dir(out_dir, manifest, overwrite) "
                "before run_chunks",
            )
        if stage is not None and (not stage or "/" in stage or stage.startswith(".")):
            raise ArgumentError(
                f"stage must be a plain folder name, got {stage!r}",
                field="stage",
                fix="use letters, digits, '_' or '-'",
            )
        self.dir = root / stage if stage else root
        self.dir.mkdir(parents=True, exist_ok=True)
        plan = {
            "schema_version": SCHEMA_VERSION,
            "n_items": int(n_items),
            "chunk_size": int(chunk_size),
            "mode": mode,
        }
        plan_path = self.dir / PLAN
        if plan_path.exists():
            old = _read_json(plan_path)
            if old != plan:
                diff = describe_difference(old, plan)
                raise OutputFolderError(
                    f"chunks were written with another chunk plan ({diff})",
                    file=plan_path,
                    fix=f"rerun with --chunk-size {old.get('chunk_size')} to resume, or use "
                    "--overwrite to start afresh",
                )
        else:
            io.write_json(plan_path, plan)
        self.remove_partial()

    def remove_partial(self) -> list[Path]:
        """Delete temporary files left by a run killed while writing. Returns what it removed."""
        removed = [p for p in self.dir.iterdir() if p.is_file() and ".tmp" in p.name]
        for p in removed:
            p.unlink(missing_ok=True)
        return removed

    def path(self, start: int, stop: int) -> Path:
        """File of items ``[start, stop)``."""
        return self.dir / f"{start}-{stop}.npz"

    def save(self, start: int, stop: int, arrays: dict[str, np.ndarray]) -> Path:
        """Write one chunk atomically (temporary file, fsync, rename), zip-deflated.

        Compression costs ~50-80 ms per MB-sized chunk but shrinks histogram-heavy summaries
        ~20x (a cohort chunk of 1024 patients: 3.1 MB → 0.16 MB), which keeps the checkpoint
        of a 10⁶-patient run at tens of MB instead of GB.
        """
        path = self.path(start, stop)
        with io.atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
        return path

    def load(self, start: int, stop: int) -> dict[str, np.ndarray] | None:
        """The saved chunk ``[start, stop)``, or ``None`` if absent or unreadable.

        An unreadable file (only possible if something other than tregsim truncated it, since
        writes are atomic) is reported with a warning, deleted and recomputed.
        """
        path = self.path(start, stop)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            warnings.warn(
                f"{path}: unreadable checkpoint chunk ({type(e).__name__}: {e}); recomputing it",
                stacklevel=2,
            )
            path.unlink(missing_ok=True)
            return None
