"""The request and response bodies of the API (pydantic models), which are also its OpenAPI schema.

The models say why in comments rather than docstrings: pydantic publishes a model's docstring as its
description in the OpenAPI schema (/openapi.json, /docs), and that schema is part of the API's contract.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from sen_infer.store import Row

API = "/api/v1"
MAX_KEY = (1 << 63) - 1  # SQLite's INTEGER; a larger number is a 422, not an overflow deep inside
RowKey = Annotated[int, PathParam(ge=0, le=MAX_KEY, description="a row's key (a hit's `key`)")]


# A search's k and filters, as every search route takes them (strict: "5" is not 5, a stray field is a
# 422, so a typo never silently widens a search). The SDK's `check_filters` validates them after this.
class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    k: int = Field(20, ge=1, description="hits to return (at most limits.max_k)")
    camera: str | list[str] | None = Field(None, description="a camera name, or a list (rows of any of them)")
    since: float | None = Field(None, description="earliest time, seconds on the gallery's clock")
    until: float | None = Field(None, description="latest time, seconds on the gallery's clock")
    per_track: bool = Field(True, description="at most one hit per track")
    min_quality: float | None = Field(None, ge=0, le=1, description="only crops scored at least this (0-1: how "
                                      "surely the crop shows one whole person; rows without a score are kept)")


# POST /query: search by description.
class TextQuery(Filters):
    text: str = Field(..., min_length=1, description="a description of the person")


# POST /query/image as JSON: "find similar" to a stored row.
class SimilarQuery(Filters):
    key: int = Field(..., ge=0, le=MAX_KEY, description="a stored row's key: find people who look like it")


# One hit: a row without its server paths, with the URLs of its evidence instead.
class HitOut(BaseModel):
    key: int
    score: float | None
    camera: str | None
    timestamp: float | None
    frame: int
    bbox: list[int]
    track: int | None
    person: int | None
    quality: float | None = Field(None, description="0-1: how surely the crop shows one whole person "
                                  "(detector confidence, shape, not cut, not covered); null where unknown")
    source: str
    superseded: bool
    crop_url: str
    frame_url: str


# Every answer that is not a success.
class ErrorOut(BaseModel):
    error: str = Field(..., description="what is wrong, in one line")


# A search's answer.
class QueryOut(BaseModel):
    hits: list[HitOut]
    took_ms: float
    rows: int


def hit_json(row: Row) -> dict:
    """A row as the API shows it (`HitOut`): no crop path of the server, the evidence by key instead.

    Args:
        row: a hit or a stored row.

    Returns:
        The JSON-ready dict, with `crop_url` and `frame_url` under /api/v1.
    """
    return {"key": row.key, "score": row.score, "camera": row.camera, "timestamp": row.timestamp,
            "frame": row.frame, "bbox": [int(v) for v in row.bbox], "track": row.track, "person": row.person,
            "quality": row.quality,
            "source": row.source, "superseded": row.superseded,
            "crop_url": f"{API}/crops/{row.key}.jpg", "frame_url": f"{API}/frames/{row.key}.jpg"}
