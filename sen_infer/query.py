"""`Retriever`: text (or image) in, ranked person crops out; and `check_filters`, the one validator of a
query's k and filters (the CLI and the service call it too)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from sen_infer.engine.encoders import Encoders
from sen_infer.engine.preprocess import read_bgr
from sen_infer.errors import QueryError, require_utf8
from sen_infer.gallery import GalleryLike, open_gallery
from sen_infer.store import Hit


class Retriever:
    """`Retriever(engine_dir).query("a man in a grey hoodie with a red backpack", k=10)`.

    The gallery defaults to `engine_dir/gallery`; a sharded root (`sen_infer.gallery.sharded`) opens alike. `r.gallery` (for ingest) creates it on first use;
    queries never do: querying a path without a gallery is a GalleryError naming the path.
    The engine dir is verified against its manifest on open (`verify=False` skips the sha256 step).
    """

    def __init__(self, engine_dir: str | os.PathLike, gallery: str | os.PathLike | None = None,
                 backend: str = "auto", verify: bool = True):
        self.engine_dir = Path(engine_dir)
        self.encoders = Encoders(self.engine_dir, backend, verify=verify)
        self.gallery_path = Path(gallery) if gallery is not None else self.engine_dir / "gallery"
        self._gallery: GalleryLike | None = None

    @property
    def backend(self) -> str:
        return self.encoders.backend

    @property
    def gallery(self) -> GalleryLike:
        """The gallery, created if it does not exist yet (the ingest path)."""
        return self.open_gallery(create=True)

    def open_gallery(self, create: bool = False) -> GalleryLike:
        """The gallery: a `Gallery`, or a `ShardedGallery` where the path is a sharded root.

        Args:
            create: make a single gallery when there is none; with False a missing gallery is an error
                rather than a new empty one.

        Returns:
            The `GalleryLike` (opened once, then kept).

        Raises:
            GalleryError: no gallery there (create=False), or it cannot be opened.
            ModelMismatchError: it was built with another model.
        """
        if self._gallery is None:
            self._gallery = open_gallery(self.gallery_path, self.encoders, create=create)
        return self._gallery

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return self.encoders.encode_text(texts)

    def encode_images(self, images) -> np.ndarray:
        return self.encoders.encode_images(images)

    def query(self, text: str, k: int = 10, camera: str | list[str] | None = None, since: float | None = None,
              until: float | None = None, per_track: bool = True, superseded: bool = False,
              per_person: bool = False) -> list[Hit]:
        """The k best crops for `text`, best first (ties by key); one per track unless per_track=False,
        one per person linked across cameras with per_person=True (after `gallery.link_identities()`).
        `camera`: one camera's name, or a list of names (rows of any of them).
        Rows of a file that was later replaced are left out unless superseded=True."""
        if not isinstance(text, str) or not text.strip():
            raise QueryError("query text is empty")
        return self._search(self.encoders.encode_text([text])[0], k, camera, since, until, per_track, superseded,
                            per_person)

    def tune_index(self, queries: list[str] | None = None, target: float = 0.99) -> dict:
        """Set the gallery's search width to the smallest that reaches `target` recall@10 against exact
        search, measured on your users' text `queries` (best: the modality the gallery is searched
        with), or on its own vectors when none are given; stored in the gallery (see VectorStore.tune_index)."""
        if queries is not None and (isinstance(queries, str) or not all(isinstance(t, str) and t.strip()
                                                                        for t in queries) or not queries):
            raise QueryError("tune_index: queries must be a non-empty list of non-empty texts")
        vectors = self.encoders.encode_text(list(queries)) if queries is not None else None
        return self.open_gallery().tune_index(target=target, queries=vectors)

    def timeline(self, person: int) -> list:
        """Where and when `person` (a hit's `person`) was seen: their tracks in time order, across cameras."""
        if isinstance(person, bool) or not isinstance(person, (int, np.integer)):
            raise QueryError(f"person must be an integer id (a hit's person), not {person!r}")
        return self.open_gallery().timeline(int(person))

    def query_image(self, image, k: int = 10, camera: str | None = None, since: float | None = None,
                    until: float | None = None, per_track: bool = True, superseded: bool = False,
                    per_person: bool = False) -> list[Hit]:
        """Find a person by example (re-identification): a path or a BGR uint8 array."""
        if isinstance(image, (str, os.PathLike)):
            require_utf8(str(image), "query image path")
            img = read_bgr(str(image))
            if img is None:
                raise QueryError(f"cannot read image {image} (missing, not a regular file, or not an image)")
        else:
            img = image
        return self._search(self.encoders.encode_images([img])[0], k, camera, since, until, per_track, superseded,
                            per_person)

    def query_similar(self, key: int, k: int = 10, camera: str | list[str] | None = None,
                      since: float | None = None, until: float | None = None, per_track: bool = True,
                      superseded: bool = False, per_person: bool = False) -> list[Hit]:
        """More like a stored crop ("find similar"): row `key`'s stored embedding is the query, so the
        answer does not depend on re-encoding a JPEG. UnknownKey when the gallery has no such row."""
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
            raise QueryError(f"key must be an integer row key, not {key!r}")
        q = self.open_gallery().embedding(int(key))
        return self._search(q, k, camera, since, until, per_track, superseded, per_person)

    def _search(self, q: np.ndarray, k, camera, since, until, per_track, superseded, per_person=False) -> list[Hit]:
        check_filters(k, camera, since, until)
        return self.open_gallery().search(q, k, camera, since, until, per_track, bool(superseded), bool(per_person))


def check_filters(k, camera, since, until) -> None:
    """QueryError for a k or filter that cannot select anything meaningful (and would not survive JSON)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise QueryError(f"k must be an integer >= 1, not {k!r}")
    if camera is not None:
        names = [camera] if isinstance(camera, str) else camera
        if not isinstance(names, (list, tuple)) or not names:
            raise QueryError(f"camera must be a camera name or a non-empty list of names, not {camera!r}")
        for name in names:
            if not isinstance(name, str):
                raise QueryError(f"camera must be a string, not {name!r}")
            require_utf8(name, "camera name")
    for name, value in (("since", since), ("until", until)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise QueryError(f"{name} must be a finite time in seconds, not {value!r}")
    if since is not None and until is not None and since > until:
        raise QueryError(f"since ({since}) is after until ({until}): the time window is empty")
