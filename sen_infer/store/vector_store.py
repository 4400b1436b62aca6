"""`VectorStore`: the facade over a store's parts (see `sen_infer.store`). It holds the state they share —
the database, the in-RAM columns, the index and the locks — and keeps the public methods; each part is a
module of functions over it.

Rows and embeddings live in SQLite (WAL, the truth); the usearch index is a derived cache saved by
write-to-temp + rename, memory-mapped when opened (no second copy of the vectors in RAM, shared by every
process) and brought up to date from SQLite on open: only rows committed after the saved file are added,
so a crash mid-save never costs a full rebuild. Many threads (and other processes) may read while one
writes; concurrent searches are served together (`search.Batcher`).

The parts use this package-internal surface: `conn()`, `db(doing)`, `writing(doing)`, `lock`, `columns`,
`index`, `emb32`, `vectors(keys)`, `refresh()`, `usable(rows)`, `append(rows)`, `drop(keys)`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from sen_infer.errors import GalleryError, UnknownKey, require_utf8
import sen_infer.store.identities as identities
import sen_infer.store.maintenance as maintenance
import sen_infer.store.reads as reads
import sen_infer.store.search as search
import sen_infer.store.sources as sources
import sen_infer.store.writes as writes
from sen_infer.store.ann import IndexParams, TieredIndex
from sen_infer.store.columns import Columns
from sen_infer.store.connection import Database
from sen_infer.store.index_files import maybe_remap, open_index, save_index
from sen_infer.store.rows import Row, SourceRecord
from sen_infer.store.schema import EDIT_LOG, SOURCE_COLUMNS, has_table, init_db, migrate
from sen_infer.store.sync import check_edits, read_new_rows, read_superseded, resync

EXACT_MAX = 20_000  # galleries up to this size are searched exactly (a cached float32 matrix product)
FILTERED_EXACT_MAX = 5_000  # a filter leaving at most this many rows is searched exactly over them
# (benchmarks.index: at 100k rows, exact over 1% selected beats graph over-fetch 0.16 ms to 13 ms;
# at 10% the graph wins 1.7 ms to 5.3 ms)
COLUMNS_FILE = "columns.npz"
REMAP_DELTA = 20_000  # a reader holding this many rows in RAM maps a newer index file saved by a writer


def check_not_orphaned(path: Path, db: Path) -> None:
    """GalleryError when the database is missing or empty while the gallery's other files remain: the rows
    and their evidence live in gallery.sqlite, and making a new one beside a stale index and crops would
    silently start an empty gallery over them. Nothing is written."""
    leftovers = [n for n in ("index.usearch", "index.json", COLUMNS_FILE, "crops") if (path / n).exists()]
    if not leftovers:
        return
    try:
        state = "missing" if not db.exists() else "empty (0 bytes)" if db.stat().st_size == 0 else None
    except OSError:
        return  # unreadable: the open that follows names the problem
    if state is not None:
        raise GalleryError(f"{db}: {state}, but the gallery's other files remain ({', '.join(leftovers)}); the rows "
                           f"live in gallery.sqlite: restore it from a backup (nothing was written)")


class VectorStore:
    """`VectorStore.open(path, fingerprint, dim)`; `add_embeddings`, `search`, `rows`, `remove`.

    Args:
        path: the gallery folder. fingerprint: the model's (sha256 of its weights). dim: embedding size.
        exact_max / filtered_exact_max: up to how many rows (selected rows) search is exact.
        read_only: never write (how files we may not write are opened).
        index_params: HNSW parameters of a new gallery (an existing one keeps its own).

    Raises:
        GalleryError: not a usable gallery database. ModelMismatchError: it holds another model's vectors.
    """

    def __init__(self, path: Path, fingerprint: str, dim: int, exact_max: int = EXACT_MAX,
                 filtered_exact_max: int = FILTERED_EXACT_MAX, read_only: bool = False,
                 index_params: IndexParams | None = None):
        self.dir = Path(path)
        self.read_only = read_only
        self.exact_max, self.filtered_exact_max = exact_max, filtered_exact_max
        self.fingerprint, self.dim = fingerprint, int(dim)
        self.db_path = self.dir / "gallery.sqlite"
        self.index_path = self.dir / "index.usearch"
        self.columns_path = self.dir / COLUMNS_FILE
        self.database = Database(self.db_path, read_only)
        self.lock = threading.RLock()  # guards the in-memory columns and the index
        self.write_lock = threading.Lock()
        self.batcher = search.Batcher()
        self.columns = Columns()
        self.damaged: list[int] = []  # keys of rows whose stored embedding is unusable (kept, never served)
        self.person_of: dict[int, int] = {}  # track -> linked person
        # what has been read of the table: the highest row id (damaged rows included), the last entry of
        # the `edits` log re-checked, and the meta counters last seen ("generation": removals,
        # supersessions and migrations; "supersessions"; "links")
        self.last_seen, self.edits_seen, self.edit_log = 0, 0, False
        self.generation = self.supersessions = self.links = None
        self.loaded = self.migrated = self.cleaned = False
        self.source_cols: set[str] = set()
        self.index_params = init_db(self, index_params)
        self.index = TieredIndex(self.dim, self.index_params)
        self.emb32 = None  # float32 matrix of every row, kept only while the store is searched exactly
        self.blocks = None  # each camera's vectors side by side on disk (`camera_blocks`), once saved
        self.bulk = None  # inside `bulk_import`: its `writes.BulkBlock` (the index whole in RAM, saved at checkpoints)
        self.remap_delta = REMAP_DELTA
        self.side_mtime = None
        self.opened = {}  # how the index was opened: "mapped", "rows_added", "rebuilt" (for `info` and tests)
        open_index(self)

    @classmethod
    def open(cls, path: str | os.PathLike, fingerprint: str, dim: int, *, exact_max: int = EXACT_MAX,
             filtered_exact_max: int = FILTERED_EXACT_MAX, create: bool = True,
             index_params: IndexParams | None = None) -> "VectorStore":
        """Open (or, with create=True, make) the store at `path` for vectors of the model `fingerprint`.

        Files we may not write open read-only: searchable, never written (not even the schema).
        `index_params` apply to a new gallery; an existing one keeps those stored in it.

        Args:
            path, fingerprint, dim, exact_max, filtered_exact_max, index_params: as the class's.
            create: make the folder and database where there are none; with False a missing gallery is an
                error, never a new one.

        Returns:
            The opened `VectorStore` (`read_only` set where its files may not be written).

        Raises:
            GalleryError: no gallery there (create=False), or one that cannot be opened or made.
            ModelMismatchError: the gallery holds another model's vectors.
        """
        path = Path(path)
        require_utf8(str(path), "gallery path", GalleryError)
        db = path / "gallery.sqlite"
        check_not_orphaned(path, db)
        if not create and not db.is_file():
            raise GalleryError(f"no gallery at {path} (gallery.sqlite is missing); ingest into it first")
        if not create and db.stat().st_size == 0:  # a reader never writes a schema into an empty file
            raise GalleryError(f"no gallery at {path} (gallery.sqlite is empty, 0 bytes); ingest into it first "
                               f"(nothing was written)")
        read_only = db.is_file() and not (os.access(path, os.W_OK) and os.access(db, os.W_OK))
        if not read_only:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise GalleryError(f"cannot create gallery dir {path}: {e.strerror or e}") from None
        return cls(path, fingerprint, dim, exact_max, filtered_exact_max, read_only=read_only,
                   index_params=index_params)

    # ---- the package-internal surface --------------------------------------------------------------
    def conn(self):
        """This thread's SQLite connection."""
        return self.database.conn()

    def db(self, doing: str):
        """A context in which SQLite errors become one-line GalleryErrors saying what was being done."""
        return self.database.errors(doing)

    @contextlib.contextmanager
    def writing(self, doing: str):
        """One write transaction (BEGIN IMMEDIATE: one writer at a time across processes), the schema
        migrated first when needed; committed when the block ends, rolled back if it raises, and the
        in-memory view refreshed after."""
        self.check_writable()
        with self.write_lock, self.db(doing):
            conn = self.conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if not self.migrated:
                    migrate(conn)
                    for statement in EDIT_LOG:
                        conn.execute(statement)
                yield conn
                conn.execute("COMMIT")
                self.migrated = True
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self.refresh()

    def source_columns(self, conn) -> set[str]:
        """The columns of the `sources` table (schema 1 lacks some until its first write)."""
        if not self.source_cols >= set(SOURCE_COLUMNS):
            self.source_cols = {r[1] for r in conn.execute("PRAGMA table_info(sources)")}
        return self.source_cols

    def usable(self, rows) -> list:
        """Rows whose embedding blob is a finite float16 vector of this model's size. A damaged row is
        kept in SQLite (it is evidence) and listed in `damaged`, but never served: one bad blob must not
        make the rest of the gallery unsearchable."""
        good, bad = [], []
        want = 2 * self.dim
        for r in rows:
            blob = r[4]
            ok = isinstance(blob, bytes) and len(blob) == want and np.isfinite(np.frombuffer(blob, np.float16)).all()
            (good if ok else bad).append(r)
        if bad:
            keys = [int(r[0]) for r in bad]
            self.damaged += keys
            warnings.warn(f"{self.db_path}: {len(keys)} row(s) with a damaged embedding are skipped "
                          f"(keys {', '.join(map(str, keys[:10]))}{' ...' if len(keys) > 10 else ''})", stacklevel=3)
        return good

    def append(self, rows, index: bool = True) -> None:
        """Rows (id, camera, timestamp, track, embedding, source) into the columns and, with index=True,
        the index delta. Only a gallery small enough to be searched exactly keeps a float32 matrix."""
        if not rows:
            return
        ids = np.array([r[0] for r in rows], np.int64)
        vectors = np.frombuffer(b"".join(r[4] for r in rows), np.float16).reshape(len(rows), self.dim)
        vectors = vectors.astype(np.float32)
        self.columns.append(rows)
        # the exact-search matrix grows with the rows (a new array: running searches keep theirs)
        self.emb32 = np.concatenate([self.emb32, vectors]) \
            if self.emb32 is not None and len(self.columns) <= self.exact_max else None
        if index:
            self.index.add(ids, vectors)

    def vectors(self, keys: np.ndarray) -> np.ndarray:
        """float32 vectors of `keys` (stored precision), from the index: the only copy in memory."""
        return self.index.get(np.asarray(keys, np.int64))

    def drop(self, keys: list[int]) -> None:
        """Rows out of the columns and the index, listed in `damaged` (the rows stay in SQLite: they are
        evidence)."""
        with self.lock:
            self.columns.drop(keys)
            self.emb32 = None
            self.index.remove(np.asarray(keys, np.int64))
            self.damaged = sorted(set(self.damaged) | set(keys))

    def forget(self, keys: list[int]) -> None:
        """Stop serving rows found damaged after they were indexed (see `drop`), and say so."""
        self.drop(keys)
        warnings.warn(f"{self.db_path}: {len(keys)} indexed row(s) have a damaged embedding in the table and are "
                      f"no longer served (keys {', '.join(map(str, keys[:10]))})", stacklevel=3)

    # ---- staying current ---------------------------------------------------------------------------
    def refresh(self) -> None:
        """Pick up what was committed since the last look, by this or another process: new rows, and
        (when the generation moved) removed rows, superseded sources and renumbered tracks."""
        conn = self.conn()
        with self.lock, self.db("read rows"):
            counters = dict(conn.execute("SELECT key, value FROM meta WHERE key IN ('generation', "
                                         "'supersessions', 'links')").fetchall())
            generation, supersessions = counters.get("generation"), counters.get("supersessions")
            if counters.get("links") != self.links:
                self.person_of = dict(conn.execute("SELECT track, person FROM persons").fetchall()) \
                    if has_table(conn, "persons") else {}
                self.links = counters.get("links")
            read_new_rows(self, conn)
            check_edits(self, conn)
            maybe_remap(self, generation)
            if self.loaded and generation != self.generation:
                resync(self, conn)
            if not self.loaded or generation != self.generation or supersessions != self.supersessions:
                read_superseded(self, conn)
            self.loaded, self.generation, self.supersessions = True, generation, supersessions

    def persist_index(self) -> None:
        """Save the index (once per ingest call, and whenever PERSIST_DELTA rows wait in RAM: it is a
        cache, and a crash before this point only means those rows are re-read from SQLite on the next open)."""
        with self.lock:
            try:
                save_index(self)
            except (OSError, RuntimeError, MemoryError) as e:  # the rows are committed; only the cache is not
                warnings.warn(f"{self.index_path}: index cache not saved ({e}); the rows it lacks are added "
                              f"again on the next open", stacklevel=3)

    # ---- writing (`writes`) ------------------------------------------------------------------------
    def check_writable(self) -> None:
        """GalleryError when the store was opened read-only."""
        if self.read_only:
            raise GalleryError(f"gallery {self.dir} is on read-only media (or its files are read-only): it can be "
                               f"searched, not written")

    def add_embeddings(self, vectors: np.ndarray, rows: list[Row],
                       source: SourceRecord | list[SourceRecord] | None = None,
                       local_tracks: bool = False, spans: dict | None = None) -> tuple[int, int]:
        """Store one row per vector with the source records, in one transaction (`writes.add_embeddings`);
        returns (added, already present).

        Args:
            vectors: [N, dim], finite; normalised here and stored as float16.
            rows: one `Row` per vector (key None); a row is unique on (source, frame, bbox).
            source: the `SourceRecord`(s) committed with the rows (content identity, resume point).
            local_tracks: the rows' track numbers are local to this call: made gallery-wide in the commit.
            spans: track number -> (first frame, last frame, start time, end time), for identity linking.

        Returns:
            (rows added, rows already present).

        Raises:
            GalleryError: vectors of another shape or not finite, or a gallery that cannot be written.
            SourceConflict: a source was superseded meanwhile, or its key holds other content.
        """
        return writes.add_embeddings(self, vectors, rows, source, local_tracks, spans)

    def bulk_import(self, expansion_add: int | None = None, checkpoint_from: int | None = writes.BULK_CHECKPOINT):
        """A block in which many `add_embeddings` calls build the index in RAM with usearch's multi-threaded
        batch add, saving it at doubling sizes and at the end (`writes.bulk_import`)::

            with store.bulk_import():
                for vectors, rows in batches:
                    store.add_embeddings(vectors, rows)

        Args:
            expansion_add: the graph's construction width for the block's rows (default: the gallery's).
            checkpoint_from: rows added in the block before its first save; each later save waits until the
                rows since the last one reach the rows saved (about 2x the index written in all). A block
                killed then leaves at most half the index for the next open to add again. None: save only
                when the block ends.

        Raises:
            GalleryError: the store is read-only, an expansion_add outside 2..4096, or a checkpoint_from
                that is not a positive integer.
        """
        return writes.bulk_import(self, expansion_add, checkpoint_from)

    def remove(self, keys) -> int:
        """Delete rows by key, logged in the `removed` table; returns how many existed (`writes.remove`).

        Args:
            keys: row keys; unknown ones are ignored. Keys are never reused.

        Raises:
            GalleryError: read-only, or the gallery cannot be written.
        """
        return writes.remove(self, keys)

    # ---- reading -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        self.refresh()
        return len(self.columns)

    def search(self, query: np.ndarray, k: int = 10, camera: str | None = None, since: float | None = None,
               until: float | None = None, per_track: bool = True, superseded: bool = False,
               per_person: bool = False, min_quality: float | None = None) -> list[Row]:
        """The best k rows for `query` matching the filters, with their cosine `score` (`search.search`).

        Args:
            query: a [dim] vector (normalised here). k, camera, since, until, per_track, superseded,
                per_person, min_quality: as `Gallery.search` (`camera` may be a list of names too).

        Raises:
            GalleryError: a query of another size, or a database that cannot be read.
        """
        return search.search(self, query, k, camera, since, until, per_track, superseded, per_person, min_quality)

    def nearest(self, query: np.ndarray, k: int = 10, camera: str | None = None, since: float | None = None,
                until: float | None = None, per_track: bool = True, superseded: bool = False,
                per_person: bool = False, min_quality: float | None = None) -> list[tuple[int, float]]:
        """`search` as (key, cosine) pairs, without reading the rows (`search.nearest`).
        Arguments and errors as `search`."""
        return search.nearest(self, query, k, camera, since, until, per_track, superseded, per_person, min_quality)

    def rows(self, keys: list[int]) -> dict[int, Row]:
        """The stored rows of `keys` (missing keys are left out), superseded ones marked.

        Returns:
            {key: `Row`} without `score`, `person` filled in where the track is linked.
        """
        return sources.rows(self, keys)

    def keys(self, camera: str | None = None, superseded: bool = True) -> list[int]:
        """Every row's key (of one camera when given), in insertion order."""
        return reads.keys(self, camera, superseded)

    def embedding(self, key: int) -> np.ndarray:
        """Row `key`'s stored (unit) vector; UnknownKey when the gallery has no such row."""
        self.refresh()
        with self.lock:
            ids = self.columns.ids
            i = int(np.searchsorted(ids, key))
            if i >= len(ids) or ids[i] != key:
                raise UnknownKey(f"no row with key {key} in the gallery")
            return self.vectors(np.array([key]))[0]

    def context(self, key: int, nearby: int = 8) -> tuple[list[int], list[int]]:
        """Keys of row `key`'s track and of its camera's rows nearest in time (`reads.context`).

        Raises:
            UnknownKey: the gallery has no row `key`.
        """
        return reads.context(self, key, nearby)

    def camera_summary(self) -> list[dict]:
        """Each camera with its row count and first and last time, by name."""
        return reads.camera_summary(self)

    # ---- sources (`sources`) -----------------------------------------------------------------------
    def source(self, path: str) -> dict | None:
        """The current (not superseded) record of the source read from `path`, None if never ingested."""
        return sources.source(self, path)

    def new_source_key(self, path: str, content: str) -> str:
        """The key for a new version of the file at `path` with content fingerprint `content`: the path
        itself the first time, else "path#<12 hex digits of the fingerprint's sha1>"."""
        return sources.new_source_key(self, path, content)

    def rows_of(self, source: str, limit: int = 2) -> list[Row]:
        """Up to `limit` rows of one source."""
        return sources.rows_of(self, source, limit)

    def source_record(self, source: str) -> dict | None:
        """The stored record of the source key `source`, None if it has none."""
        return sources.source_record(self, source)

    def has_row(self, source: str, frame: int, bbox) -> bool:
        """Whether the row (source, frame, bbox) is stored."""
        return sources.has_row(self, source, frame, bbox)

    # ---- identities (`identities`) -----------------------------------------------------------------
    def track_summaries(self) -> list:
        """Every track of a current source as a `TrackSummary`, for identity linking."""
        return identities.track_summaries(self)

    def set_persons(self, person_of: dict[int, int], params: dict) -> None:
        """Replace every track's linked person in one transaction."""
        identities.set_persons(self, person_of, params)

    def appearances(self, person: int) -> list:
        """The tracks linked to `person` as `Appearance`s, in time order."""
        return identities.appearances(self, person)

    # ---- maintenance (`maintenance`) ---------------------------------------------------------------
    def tune_index(self, target: float = 0.99, k: int = 10, queries: np.ndarray | None = None,
                   sample: int = 300, widths=(64, 96, 128, 192, 256, 384, 512, 768, 1024), seed: int = 0) -> dict:
        """Choose, store and use the smallest search width reaching `target` recall@k against exact search
        (`maintenance.tune_index`); returns what was measured and chosen.

        Args:
            target: the recall@k to reach, with 95 % confidence over the queries. k: the recall's depth.
            queries: [m, dim] query embeddings; None: `sample` of its own vectors (drawn with `seed`), each
                asked for its k nearest other rows.
            widths: the search widths (usearch expansion_search) tried, smallest first.

        Returns:
            {"target", "k", "queries", "query_source", "rows", "measured", "chosen", "reached", "at"}.

        Raises:
            GalleryError: fewer than 2k rows, queries of another size, or a gallery that cannot be written.
        """
        return maintenance.tune_index(self, target, k, queries, sample, widths, seed)

    def stats(self) -> dict:
        """Counts, cameras, time span, damaged rows and index figures."""
        return maintenance.stats(self)

    def check(self) -> dict:
        """The full consistency check of `info --check`: {"ok", "problems", ...figures}."""
        return maintenance.check(self)

    def close(self) -> None:
        """Close this thread's database connection."""
        self.database.close()
