"""`Retriever`: text (or image) in, ranked person crops out."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sen_infer.encoders import Encoders
from sen_infer.errors import QueryError
from sen_infer.gallery import Gallery
from sen_infer.preprocess import read_bgr


@dataclass(frozen=True)
class Hit:
    key: int
    score: float
    source: str
    camera: str | None
    timestamp: float | None
    frame: int
    bbox: tuple[int, int, int, int]
    track: int | None
    crop_path: str | None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bbox"] = list(self.bbox)
        return d


class Retriever:
    """`Retriever(engine_dir).query("a man in a grey hoodie with a red backpack", k=10)`.

    The gallery defaults to `engine_dir/gallery` and is created on first use.
    """

    def __init__(self, engine_dir: str | os.PathLike, gallery: str | os.PathLike | None = None,
                 backend: str = "auto"):
        self.engine_dir = Path(engine_dir)
        self.encoders = Encoders(self.engine_dir, backend)
        self.gallery_path = Path(gallery) if gallery is not None else self.engine_dir / "gallery"
        self._gallery: Gallery | None = None

    @property
    def backend(self) -> str:
        return self.encoders.backend

    @property
    def gallery(self) -> Gallery:
        if self._gallery is None:
            self._gallery = Gallery.open(self.gallery_path, encoders=self.encoders)
        return self._gallery

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return self.encoders.encode_text(texts)

    def encode_images(self, images) -> np.ndarray:
        return self.encoders.encode_images(images)

    def _hits(self, pairs: list[tuple[int, float]]) -> list[Hit]:
        rows = self.gallery.rows([k for k, _ in pairs])
        return [Hit(k, s, r.source, r.camera, r.timestamp, r.frame, r.bbox, r.track, r.crop_path)
                for k, s in pairs if (r := rows.get(k)) is not None]

    def query(self, text: str, k: int = 10, camera: str | None = None, since: float | None = None,
              until: float | None = None, per_track: bool = True) -> list[Hit]:
        """The k best crops for `text`, best first (ties by key); one per track unless per_track=False."""
        if not isinstance(text, str) or not text.strip():
            raise QueryError("query text is empty")
        q = self.encoders.encode_text([text])[0]
        return self._hits(self.gallery.search(q, k, camera, since, until, per_track))

    def query_image(self, image, k: int = 10, camera: str | None = None, since: float | None = None,
                    until: float | None = None, per_track: bool = True) -> list[Hit]:
        """Find a person by example (re-identification): a path or a BGR uint8 array."""
        img = read_bgr(str(image)) if isinstance(image, (str, os.PathLike)) else image
        if img is None:
            raise QueryError(f"cannot read image {image}")
        q = self.encoders.encode_images([img])[0]
        return self._hits(self.gallery.search(q, k, camera, since, until, per_track))
