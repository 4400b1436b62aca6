"""Whole pictures into a store: each image read once, fingerprinted, decoded, embedded and copied into the
gallery (`crops/images/`), so a row shows exactly the picture that was embedded even after the file changes."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import cv2
import numpy as np

from sen_infer.engine.preprocess import check_image_array, read_bytes, to_input
from sen_infer.errors import DuplicateContent, IngestError, SourceConflict
from sen_infer.files import write_atomic
from sen_infer.ingest.inputs import IMAGE_EXTENSIONS, camera_name, expand_inputs, finite_time
from sen_infer.ingest.report import IngestReport, printable
import sen_infer.store.aliases as aliases
from sen_infer.store import Row, SourceRecord, normalise


class ImageIngest:
    """Adds pictures to `store`, embedded with `encoders`, their copies kept under `crops_dir`."""

    def __init__(self, store, encoders, crops_dir: Path):
        self.store, self.encoders, self.crops_dir = store, encoders, Path(crops_dir)

    # one function: the batch buffer, its flush and the per-item loop share the report and the batch
    def add(self, items, camera: str | None = None, timestamp: float | None = None,
                   track: int | None = None, batch_size: int = 64, progress=None) -> IngestReport:
        """Add whole images (paths, folders searched recursively, or BGR arrays) as crops. Unreadable
        files are skipped and reported. Each image is read once: its bytes are fingerprinted, decoded,
        preprocessed to the model's input and copied into the gallery (`crops/images/`), so the row
        shows exactly the picture that was embedded even if the file is later replaced, and memory
        holds at most `batch_size` model inputs whatever the photos' resolution. A file whose content
        changed since it was ingested is a new source; the old rows stay, marked superseded."""
        timestamp, camera = finite_time(timestamp, "timestamp"), camera_name(camera)
        if track is not None and (isinstance(track, bool) or not isinstance(track, int)):
            raise IngestError(f"track must be an integer, not {track!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise IngestError(f"batch_size must be an integer >= 1, not {batch_size!r}")
        self.store.check_writable()
        report = IngestReport()
        t0 = time.perf_counter()
        pending: list[tuple[Row, SourceRecord | None, np.ndarray]] = []
        m = self.encoders.manifest

        def flush():
            if not pending:
                return
            emb = self.encoders.encode_inputs(np.stack([x for *_, x in pending]))
            report.crops_embedded += len(pending)
            try:
                added, existing = self.store.add_embeddings(emb, [r for r, *_ in pending],
                                                            [s for _, s, _ in pending if s is not None])
            except SourceConflict:  # one file of the batch changed meanwhile: store the others one by one
                added = existing = 0
                for (row, record, _), e in zip(pending, emb):
                    try:
                        a, x = self.store.add_embeddings(e[None], [row], record)
                        added, existing = added + a, existing + x
                    except DuplicateContent as twin:  # a copy another name (or ingest) stored first
                        aliases.add_alias(self.store, record.path, twin.twin)
                        existing += 1
                    except SourceConflict as conflict:
                        report.fail(record.path if record else row.source, str(conflict))
            report.added += added
            report.skipped_existing += existing
            pending.clear()

        def tick():
            if progress is not None:
                progress(1)

        def inputs():  # in the order given, folders expanded where they stand
            for item in items:
                if isinstance(item, np.ndarray):
                    yield item
                else:
                    yield from expand_inputs([item], report, videos=False)[0]

        for item in inputs():
            try:
                got = self._array_image(item, report) if isinstance(item, np.ndarray) else \
                    self._file_image(item, report)
            except OSError as e:
                what = f"array {_array_digest(item)}" if isinstance(item, np.ndarray) else item
                report.fail(what, f"cannot store a copy in {e.filename or self.crops_dir}: {e.strerror or e}")
                got = None
            if got is not None:
                img, key, crop_path, record = got
                h, w = img.shape[:2]
                row = Row(key, camera, -1, timestamp, (0, 0, w, h), track, crop_path)
                pending.append((row, record, to_input(img, m.image_size, m.mean, m.std)))
                del img
            if len(pending) >= batch_size:
                flush()
            tick()
        flush()
        if report.added:
            self.store.persist_index()
        report.seconds = time.perf_counter() - t0
        return report

    def _array_image(self, img: np.ndarray, report: IngestReport):
        """An in-memory picture: content-addressed ("array:<sha1>"), kept as a lossless PNG."""
        check_image_array(img)
        digest = _array_digest(img)
        source, path = f"array:{digest}", self.crops_dir / "arrays" / f"{digest}.png"
        if self.store.has_row(source, -1, (0, 0, img.shape[1], img.shape[0])):
            report.skipped_existing += 1
            return None
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            ok, data = cv2.imencode(".png", img)
            if not ok:
                raise OSError(f"PNG encoding failed for {path}")
            write_atomic(path, data.tobytes())
        return img, source, str(path), None

    def _file_image(self, item, report: IngestReport):
        """(picture, source key, stored copy, source record) for an image file; None when it is skipped
        (unreadable, or this very content was already ingested from this path)."""
        path = str(Path(item).resolve())
        try:
            st = os.stat(path)
        except OSError:
            st = None
        data = None if st is None else read_bytes(path)
        img = None if data is None else cv2.imdecode(data, cv2.IMREAD_COLOR)
        if img is None:
            report.skip(item, "not a readable image (missing, empty, truncated or another format)")
            return None
        digest = hashlib.sha1(data).hexdigest()
        head = f"sha1:{digest}"
        state = self.store.source(path)
        if state is not None and state.get("head") == head:
            report.skipped_existing += 1
            return None
        twin = aliases.by_content(self.store, head, "image")
        if twin is not None:  # this picture is stored under another name: record the name, store nothing
            if aliases.add_alias(self.store, path, twin["source"]):
                report.notes.append(f"{printable(item)}: same picture as {printable(twin['path'] or twin['source'])}, "
                                    f"already in the gallery: recorded as another name of it, not stored twice")
            report.skipped_existing += 1
            return None
        supersedes, first = None, True
        if state is not None and state.get("head") is None and self._same_as_stored(state["source"], img):
            first = False  # ingested before content was fingerprinted, and still the same picture
        elif state is not None:
            supersedes = state["source"]
            report.notes.append(f"{printable(item)}: its content changed since it was ingested; the earlier "
                                f"rows stay, marked superseded")
        key = state["source"] if state is not None and not supersedes else self.store.new_source_key(path, head)
        suffix = Path(path).suffix.lower() if Path(path).suffix.lower() in IMAGE_EXTENSIONS else ".img"
        copy = self.crops_dir / "images" / digest[:2] / f"{digest}{suffix}"
        if not copy.is_file():
            copy.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(copy, data.tobytes())
        record = SourceRecord(key, "image", path=path, size=st.st_size, mtime_ns=st.st_mtime_ns, head=head,
                              supersedes=supersedes, first=first)
        return img, key, str(copy), record

    def _same_as_stored(self, source: str, img: np.ndarray) -> bool:
        """Whether `img` is the picture embedded for `source` by a version that kept no content
        fingerprint: same size and the same embedding up to float16 storage (cosine > 0.999)."""
        rows = self.store.rows_of(source)
        if len(rows) != 1 or rows[0].bbox[2:] != (img.shape[1], img.shape[0]):
            return False
        m = self.encoders.manifest
        new = normalise(self.encoders.encode_inputs(to_input(img, m.image_size, m.mean, m.std)[None]))[0]
        try:
            return float(new @ normalise(self.store.embedding(rows[0].key))) > 0.999
        except KeyError:  # a damaged row: treat the file as new content
            return False



def _array_digest(img) -> str:
    return hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest()[:20] if isinstance(img, np.ndarray) else "?"
