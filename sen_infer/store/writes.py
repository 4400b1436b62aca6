"""Writing to a store: rows with their source records in one transaction (`add_embeddings`), and
removals (logged: a gallery is evidence)."""

from __future__ import annotations

import contextlib
import dataclasses
import time

import numpy as np

from sen_infer.errors import DuplicateContent, GalleryError, SourceConflict
from sen_infer.store.aliases import ensure_tables
from sen_infer.store.rows import Row, SourceRecord, normalise
from sen_infer.store.schema import SPANS, add_quality, bump

BULK_CHECKPOINT = 250_000  # rows a `bulk_import` block adds before its first save (then at each doubling)
PERSIST_DELTA = 50_000  # a writer saves the index whenever this many rows wait in the in-RAM delta (what a
# crash leaves to re-index on the next open: ~25 s of 512-d inserts on 2 cores)


def add_embeddings(store, vectors: np.ndarray, rows: list[Row],
                   source: SourceRecord | list[SourceRecord] | None = None,
                   local_tracks: bool = False, spans: dict | None = None) -> tuple[int, int]:
    """Store one row per vector (normalised, kept as float16) in one transaction, with the records of
    `source` (one or a list) when given; returns (added, already present). Rows are unique on (source, frame, bbox).
    With local_tracks the rows' track numbers (1, 2, ...) are local to this call and become
    gallery-wide ids inside the committing transaction, so concurrent writers never share one.
    `spans`: track number -> (first frame, last frame, start time, end time) of the tracks' whole
    lives, kept for identity linking."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape != (len(rows), store.dim):
        raise GalleryError(f"add_embeddings needs a [{len(rows)}, {store.dim}] array for {len(rows)} rows, "
                           f"not {list(vectors.shape)}")
    if not np.isfinite(vectors).all():
        raise GalleryError("add_embeddings: vectors must be finite (NaN or inf found)")
    emb = normalise(vectors).astype(np.float16)
    for r in rows:
        if r.quality is not None and not (isinstance(r.quality, (int, float)) and 0.0 <= r.quality <= 1.0):
            raise GalleryError(f"a row's quality must be a number in [0, 1] or None, not {r.quality!r}")
    records = [(r.source, r.camera, int(r.frame), r.timestamp, *map(int, r.bbox), r.track, r.crop_path,
                e.tobytes(), None if r.quality is None else float(r.quality)) for r, e in zip(rows, emb)]
    with store.writing("write") as conn:
        if records:
            add_quality(conn)
        base = 0
        if local_tracks and records:
            base = int(conn.execute("SELECT value FROM meta WHERE key='next_track'").fetchone()[0]) - 1
            top = max((r[8] for r in records if r[8] is not None), default=0)
            records = [(*r[:8], None if r[8] is None else base + r[8], *r[9:]) for r in records]  # r[8]: track
            conn.execute("UPDATE meta SET value=? WHERE key='next_track'", (str(base + top + 1),))
        elif records:  # tracks given by the caller: keep the counter above them
            top = max((r[8] for r in records if r[8] is not None), default=None)
            if top is not None:
                conn.execute("UPDATE meta SET value = max(CAST(value AS INTEGER), ?) WHERE key='next_track'",
                             (top + 1,))
        before = conn.total_changes
        conn.executemany("INSERT OR IGNORE INTO crops (source, camera, frame, timestamp, x, y, w, h, track, "
                         "crop_path, embedding, quality) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", records)
        added = conn.total_changes - before
        if spans and added:
            conn.execute(SPANS)
            wanted = {base + int(t): v for t, v in spans.items()}
            present = {t for (t,) in conn.execute(
                f"SELECT DISTINCT track FROM crops WHERE track IN ({','.join('?' * len(wanted))})", list(wanted))}
            conn.executemany("INSERT OR REPLACE INTO track_spans VALUES (?, ?, ?, ?, ?)",
                             [(t, *wanted[t]) for t in sorted(present)])
        for record in [source] if isinstance(source, SourceRecord) else source or []:
            record_source(conn, record)
    if store.bulk:
        checkpoint(store)
    elif store.index.delta_size >= max(PERSIST_DELTA, len(store.index) // 4):
        # bounds what a crash leaves to re-index; growing with the gallery, so that a long ingest
        # rewrites the index file a logarithmic number of times, not once per 50,000 rows
        store.persist_index()
    return added, len(records) - added


@dataclasses.dataclass
class BulkBlock:
    """A `bulk_import` block's state: its construction width (None: the gallery's), the rows before its
    first save (None: no save before the end), and the index's size at the last save."""

    expansion_add: int | None
    checkpoint_from: int | None
    saved: int


def checkpoint(store) -> None:
    """Inside `bulk_import`: save the index once the rows added since the last save reach both the block's
    `checkpoint_from` and the rows saved, then hold it whole in RAM again. The saves double in size, so
    they write about twice the final index in all (the 10M build: at 0.25, 0.5, 1, 2, 4 and 8M rows), and a
    block killed at any point leaves the next open at most half the index to add again, not all of it."""
    block = store.bulk
    if block.checkpoint_from is None or len(store.index) - block.saved < max(block.checkpoint_from, block.saved):
        return
    with store.lock:
        store.persist_index()  # maps the saved file (a failed save warns and keeps the in-RAM index)
        _hold_in_ram(store, block.expansion_add)
        block.saved = len(store.index)


def _hold_in_ram(store, expansion_add: int | None) -> None:
    """The store's index as one in-RAM index that new rows are added to at `expansion_add` (None: the gallery's)."""
    store.index = store.index.in_ram()
    if expansion_add is not None:
        store.index.delta.expansion_add = expansion_add


@contextlib.contextmanager
def bulk_import(store, expansion_add: int | None = None, checkpoint_from: int | None = BULK_CHECKPOINT):
    """Many rows at once (re-indexing, migrations): the index is held whole in RAM, every batch's rows are
    added to it with usearch's multi-threaded batch add, and it is saved at doubling sizes (`checkpoint`)
    and when the block ends.

    Each `add_embeddings` inside still commits its rows in its own transaction, so a crash loses nothing
    committed: the next open maps the last saved index and adds the rows it lacks, which the checkpoints
    bound to half the index. Costs the index in RAM (about 1.2 KB a row at 512-d) for the block's length.
    Other processes map each checkpoint as they refresh. `expansion_add`: the graph's construction width for
    the rows added in the block (default: the gallery's); a smaller one builds faster and finds neighbours
    less well at the same search width (benchmarks.ann_budget measures both), which a wider search
    (`tune-index`) buys back. `checkpoint_from`: rows before the first save (None: only at the end)."""
    store.check_writable()
    if expansion_add is not None and not (isinstance(expansion_add, int) and 2 <= expansion_add <= 4096):
        raise GalleryError(f"expansion_add must be an integer from 2 to 4096, not {expansion_add!r}")
    if checkpoint_from is not None and not (isinstance(checkpoint_from, int) and checkpoint_from > 0):
        raise GalleryError(f"checkpoint_from must be a positive integer or None, not {checkpoint_from!r}")
    with store.lock:
        store.refresh()
        _hold_in_ram(store, expansion_add)
        store.bulk = BulkBlock(expansion_add, checkpoint_from, saved=len(store.index))
    try:
        yield store
    finally:
        store.bulk = None
        if expansion_add is not None:
            store.index.delta.expansion_add = store.index_params.expansion_add
        store.persist_index()


def record_source(conn, s: SourceRecord) -> None:
    """Write `s` in the committing transaction. Refused (SourceConflict, nothing of the transaction
    kept) when its source was superseded meanwhile (the file was replaced while this ingest ran), or
    when a first commit finds the key already taken by other content (two ingests of one path with
    different content at once)."""
    old = conn.execute("SELECT superseded, head FROM sources WHERE source=?", (s.source,)).fetchone()
    if old is not None and old[0] is not None:
        raise SourceConflict(f"{s.path or s.source}: superseded by a newer version of the file while this "
                             f"ingest ran; nothing of this batch was stored")
    if s.first and old is not None and old[1] is not None and s.head is not None and old[1] != s.head:
        raise SourceConflict(f"{s.path or s.source}: another ingest stored different content under this "
                             f"source at the same time; ingest it again")
    ensure_tables(conn)  # aliases, sources by content, start_time (an older gallery gets them here)
    if s.first and s.head is not None:  # one content, one source: a copy stored meanwhile by another ingest
        twin = conn.execute("SELECT source, path FROM sources WHERE head=? AND kind=? AND source<>? LIMIT 1",
                            (s.head, s.kind, s.source)).fetchone()
        if twin is not None:
            raise DuplicateContent(twin[0], twin[1], s.path)
    if s.supersedes is not None and s.supersedes != s.source:
        conn.execute("UPDATE sources SET superseded=? WHERE source=? AND superseded IS NULL",
                     (s.finished, s.supersedes))
        bump(conn, "supersessions")
    conn.execute("INSERT INTO sources (source, kind, rows, finished, resume_frame, frames, size, mtime_ns, head, "
                 "path, start_time) VALUES (?1, ?2, (SELECT count(*) FROM crops WHERE source = ?1), ?3, ?4, ?5, ?6, "
                 "?7, ?8, ?9, ?10) ON CONFLICT (source) DO UPDATE SET kind=excluded.kind, rows=excluded.rows, "
                 "finished=excluded.finished, resume_frame=excluded.resume_frame, frames=excluded.frames, "
                 "size=excluded.size, mtime_ns=excluded.mtime_ns, head=excluded.head, path=excluded.path, "
                 "start_time=coalesce(sources.start_time, excluded.start_time)",
                 (s.source, s.kind, s.finished, s.resume_frame, s.frames, s.size, s.mtime_ns, s.head,
                  s.path or s.source, s.start_time))


def remove(store, keys) -> int:
    """Delete rows by key (and their index entries) in one transaction; returns how many existed.
    Removals are logged in the `removed` table (key, source, time): a gallery is evidence, and
    what left it, and when, is part of that. Keys are never reused."""
    keys = sorted({int(k) for k in keys})
    store.check_writable()
    if not keys:
        return 0
    with store.writing("remove rows") as conn:
        now, gone = time.time(), 0
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            marks = ",".join("?" * len(part))
            conn.execute(f"INSERT OR IGNORE INTO removed (key, source, at) SELECT id, source, ? FROM crops "
                         f"WHERE id IN ({marks})", [now, *part])
            before = conn.total_changes
            conn.execute(f"DELETE FROM crops WHERE id IN ({marks})", part)
            gone += conn.total_changes - before
        conn.execute("UPDATE sources SET rows = (SELECT count(*) FROM crops WHERE crops.source = "
                     "sources.source) WHERE source IN (SELECT source FROM removed WHERE at = ?)", (now,))
        bump(conn)
    if gone:
        store.persist_index()
    return gone
