"""sen_infer: the torch-free deployment SDK (tokenizer + onnxruntime/TensorRT + usearch + SQLite + OpenCV).

    from sen_infer import Retriever
    r = Retriever("engines/sen")                   # gallery defaults to engines/sen/gallery
    r.gallery.add_video("cam1.mp4", camera="cam1")
    hits = r.query("a woman in a red coat carrying a black backpack", k=10)

Import rule: nothing under sen_infer imports torch, open_clip, sen_train or export.
"""

# onnxruntime must be loaded before usearch's compiled module: the other order segfaults inside
# onnxruntime's import (usearch 2.26 + onnxruntime 1.32, seen on Linux x86_64). Importing it here
# makes the order right for everything that imports sen_infer first.
import onnxruntime  # noqa: F401, E402  (first on purpose)
import os as _os

# FFmpeg (inside OpenCV) prints its own lines ("moov atom not found") beside ours for every damaged
# video; ours already says which file and what went wrong. Read when OpenCV first opens a video, so it is
# set before; a user who wants FFmpeg's log sets OPENCV_FFMPEG_LOGLEVEL themselves (24 = warnings).
_os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

from sen_infer.errors import (BackendUnavailable, EngineDirError, GalleryError, IngestError, ModelMismatchError,
                              QueryError, SenInferError, SourceConflict, UnknownKey)
from sen_infer.gallery import Capabilities, Gallery, GalleryLike, ShardedGallery, open_gallery
from sen_infer.ingest import IngestReport
from sen_infer.query import Retriever
from sen_infer.store import Hit, Row, VectorStore

__version__ = "0.1.0"
__all__ = ["Retriever", "Gallery", "ShardedGallery", "GalleryLike", "Capabilities", "open_gallery", "VectorStore", "Row",
           "Hit", "IngestReport", "SenInferError", "EngineDirError", "BackendUnavailable", "GalleryError",
           "ModelMismatchError", "QueryError", "SourceConflict", "UnknownKey", "IngestError"]
