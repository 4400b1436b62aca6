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

    The gallery defaults to `engine_dir/gallery`; a sharded root (`sen_infer.gallery.sharded`) opens
    alike. `r.gallery` (for ingest) creates it on first use; queries never do: querying a path without a
    gallery is a GalleryError naming the path.
    The engine dir is verified against its manifest on open (`verify=False` skips the sha256 step).

    Args:
        engine_dir: the engine dir `export` wrote (towers, tokenizer, manifest).
        gallery: a gallery folder or a sharded root (default `engine_dir/gallery`), opened on first use.
        backend: "auto" (the fastest that runs here) or one of `engine.encoders.BACKENDS`.
        verify: check the sha256 of every file loaded against the manifest.

    Raises:
        EngineDirError: the engine dir is missing, incomplete or tampered with, or its plans are foreign.
        BackendUnavailable: the backend named cannot run here.
    """

    def __init__(self, engine_dir: str | os.PathLike, gallery: str | os.PathLike | None = None,
                 backend: str = "auto", verify: bool = True):
        self.engine_dir = Path(engine_dir)
        self.encoders = Encoders(self.engine_dir, backend, verify=verify)
        self.gallery_path = Path(gallery) if gallery is not None else self.engine_dir / "gallery"
        self._gallery: GalleryLike | None = None

    @property
    def backend(self) -> str:
        """The backend the encoders run on ("onnx-cpu", "tensorrt", ...): the one "auto" chose."""
        return self.encoders.backend

    @property
    def gallery(self) -> GalleryLike:
        """The gallery, created if it does not exist yet (the ingest path).

        Raises:
            GalleryError: it cannot be opened or made. ModelMismatchError: it holds another model's rows.
        """
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
        """Embed texts with the text tower, for callers that search or compare vectors themselves.

        Args:
            texts: query texts (one string counts as a list of one). A text longer than the model's
                context is truncated, with a warning.

        Returns:
            float32 [N, D], L2-normalised, in the order of `texts`.

        Raises:
            QueryError: an empty or non-UTF-8 text.
        """
        return self.encoders.encode_text(texts)

    def encode_images(self, images) -> np.ndarray:
        """Embed pictures with the image tower (the vectors `query_image` searches with).

        Args:
            images: a list of image paths or BGR uint8 arrays ([h, w], [h, w, 3] or [h, w, 4]).

        Returns:
            float32 [N, D], L2-normalised, in the order of `images`.

        Raises:
            QueryError: a path that cannot be read as an image, or an array that is not a picture.
        """
        return self.encoders.encode_images(images)

    def query(self, text: str, k: int = 10, camera: str | list[str] | None = None, since: float | None = None,
              until: float | None = None, per_track: bool = True, superseded: bool = False,
              per_person: bool = False, min_quality: float | None = None) -> list[Hit]:
        """The k best crops for `text`, best first (ties by key); one per track unless per_track=False,
        one per person linked across cameras with per_person=True (after `gallery.link_identities()`).
        `camera`: one camera's name, or a list of names (rows of any of them).
        Rows of a file that was later replaced are left out unless superseded=True.

        Args:
            text: what the person looks like, in words.
            k: most hits returned (fewer when fewer rows match).
            camera: a camera name or a list of names; an unknown name matches nothing.
            since / until: bounds on the rows' timestamps, in seconds (Unix time where the ingest was given
                a start time); a row without a timestamp never matches a time window.
            per_track: one hit per track (its best crop); False lets one track fill the page.
            superseded: include rows of files replaced since they were ingested.
            per_person: one hit per linked person (a single gallery only).
            min_quality: leave out crops whose score (`Hit.quality`, 0 to 1: how surely the crop shows one
                whole person) is known and lower; pictures and older rows have none and stay.

        Returns:
            `Hit`s (= `Row`s) with their cosine `score`.

        Raises:
            QueryError: empty text, a bad k or filter, or per_person on a sharded gallery.
            GalleryError: no gallery at the path, or it cannot be read.
            ModelMismatchError: the gallery was built with another model.
        """
        if not isinstance(text, str) or not text.strip():
            raise QueryError("query text is empty")
        return self._search(self.encoders.encode_text([text])[0], k, camera, since, until, per_track, superseded,
                            per_person, min_quality)

    def tune_index(self, queries: list[str] | None = None, target: float = 0.99) -> dict:
        """Set the gallery's search width to the smallest that reaches `target` recall@10 against exact
        search, measured on your users' text `queries` (best: the modality the gallery is searched
        with), or on its own vectors when none are given; stored in the gallery (see VectorStore.tune_index).

        Args:
            queries: sample query texts; None measures on a sample of the gallery's own vectors.
            target: the recall@10 to reach, with 95 % confidence over the queries.

        Returns:
            What was measured and chosen ({"measured", "chosen", "reached", ...}); when no width reaches
            `target` the widest measured is chosen and "reached" is False.

        Raises:
            QueryError: `queries` is not a non-empty list of non-empty texts.
            GalleryError: a sharded root (tune one shard), a read-only gallery, or fewer than 20 rows.
        """
        if queries is not None and (isinstance(queries, str) or not all(isinstance(t, str) and t.strip()
                                                                        for t in queries) or not queries):
            raise QueryError("tune_index: queries must be a non-empty list of non-empty texts")
        vectors = self.encoders.encode_text(list(queries)) if queries is not None else None
        return self.open_gallery().tune_index(target=target, queries=vectors)

    def timeline(self, person: int) -> list:
        """Where and when `person` (a hit's `person`) was seen: their tracks in time order, across cameras.

        Args:
            person: a person id (`Hit.person`); a track never linked is a person of its own.

        Returns:
            `Appearance`s (track, camera, source, first and last time and frame, keys of its crops); empty
            for an id the gallery does not know.

        Raises:
            QueryError: `person` is not an integer.
            GalleryError: a sharded root (identities are linked within one gallery), or no gallery.
        """
        if isinstance(person, bool) or not isinstance(person, (int, np.integer)) or not 0 <= person < 2 ** 63:
            raise QueryError(f"person must be an integer id (a hit's person), not {person!r}")
        return self.open_gallery().timeline(int(person))

    def query_image(self, image, k: int = 10, camera: str | None = None, since: float | None = None,
                    until: float | None = None, per_track: bool = True, superseded: bool = False,
                    per_person: bool = False, min_quality: float | None = None) -> list[Hit]:
        """Find a person by example (re-identification): a path or a BGR uint8 array.

        Args:
            image: an image path, or a BGR uint8 array ([h, w], [h, w, 3] or [h, w, 4]).
            k, camera, since, until, per_track, superseded, per_person, min_quality: as `query`.

        Returns:
            `Hit`s with their cosine `score`, best first.

        Raises:
            QueryError: an image that cannot be read or is not a picture, or a bad k or filter.
            GalleryError: no gallery at the path, or it cannot be read.
        """
        if isinstance(image, (str, os.PathLike)):
            require_utf8(str(image), "query image path")
            img = read_bgr(str(image))
            if img is None:
                raise QueryError(f"cannot read image {image} (missing, not a regular file, or not an image)")
        else:
            img = image
        return self._search(self.encoders.encode_images([img])[0], k, camera, since, until, per_track, superseded,
                            per_person, min_quality)

    def query_similar(self, key: int, k: int = 10, camera: str | list[str] | None = None,
                      since: float | None = None, until: float | None = None, per_track: bool = True,
                      superseded: bool = False, per_person: bool = False,
                      min_quality: float | None = None) -> list[Hit]:
        """More like a stored crop ("find similar"): row `key`'s stored embedding is the query, so the
        answer does not depend on re-encoding a JPEG. UnknownKey when the gallery has no such row.

        Args:
            key: a row key (`Hit.key`); the row itself usually comes first, unless the filters leave it out.
            k, camera, since, until, per_track, superseded, per_person, min_quality: as `query`.

        Returns:
            `Hit`s with their cosine `score`, best first.

        Raises:
            UnknownKey: the gallery has no row `key`.
            QueryError: a key that is not an integer, or a bad k or filter.
            GalleryError: no gallery at the path, or it cannot be read.
        """
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not 0 <= key < 2 ** 63:
            raise QueryError(f"key must be an integer row key, not {key!r}")
        q = self.open_gallery().embedding(int(key))
        return self._search(q, k, camera, since, until, per_track, superseded, per_person, min_quality)

    def _search(self, q: np.ndarray, k, camera, since, until, per_track, superseded, per_person=False,
                min_quality=None) -> list[Hit]:
        check_filters(k, camera, since, until, min_quality)
        return self.open_gallery().search(q, k, camera, since, until, per_track, bool(superseded), bool(per_person),
                                          min_quality=None if min_quality is None else float(min_quality))


def check_filters(k, camera, since, until, min_quality=None) -> None:
    """QueryError for a k or filter that cannot select anything meaningful (and would not survive JSON)."""
    if min_quality is not None and (isinstance(min_quality, bool) or not isinstance(min_quality, (int, float))
                                    or not 0.0 <= min_quality <= 1.0):
        raise QueryError(f"min_quality must be a number from 0 to 1, not {min_quality!r}")
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
