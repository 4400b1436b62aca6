"""Galleries: `Gallery` (one folder) and `ShardedGallery` (many under a catalogue), both `GalleryLike`;
`open_gallery` opens whichever a path holds."""

from sen_infer.gallery.protocol import Capabilities, GalleryLike
from sen_infer.gallery.single import Gallery
from sen_infer.gallery.sharded import ShardedGallery, open_gallery

__all__ = ["Gallery", "ShardedGallery", "GalleryLike", "Capabilities", "open_gallery"]
