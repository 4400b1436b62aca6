"""The vector store: rows and embeddings in SQLite (WAL, the truth) with a usearch index as a derived cache.

It knows nothing of models, images or video. `VectorStore` is the facade; its parts each have one job:
`schema` (tables and migration), `connection` (SQLite per thread), `columns` (the in-RAM columns),
`index_files` (the saved index and its sidecars), `search` (exact and graph search, the batcher),
`sources` (what was ingested of which file), `maintenance` (tuning, stats, check) and `identities`
(track summaries and linked persons).
"""

from sen_infer.store import peek
from sen_infer.store.ann import IndexParams, TieredIndex
from sen_infer.store.rows import Appearance, Hit, Row, SourceRecord, TrackSummary, normalise
from sen_infer.store.vector_store import EXACT_MAX, FILTERED_EXACT_MAX, VectorStore

__all__ = ["VectorStore", "Row", "Hit", "SourceRecord", "TrackSummary", "Appearance", "IndexParams", "TieredIndex",
           "normalise", "peek", "EXACT_MAX", "FILTERED_EXACT_MAX"]
