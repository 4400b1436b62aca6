"""The request and response bodies of the API (pydantic models), which are also its OpenAPI schema.

The models say why in comments rather than docstrings: pydantic publishes a model's docstring as its
description in the OpenAPI schema (/openapi.json, /docs), and that schema is part of the API's contract.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Annotated

from fastapi import Path as PathParam
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from sen_infer.serve.limits import Limits
from sen_infer.store import Row

API = "/api/v1"
MAX_KEY = (1 << 63) - 1  # SQLite's INTEGER; a larger number is a 422, not an overflow deep inside
LIMITS = Limits()  # the bounds the schema states (the service's own Limits refuse past them too)


def _decimal_key(value):
    """A row key in a URL is decimal digits only: "1_0", "+1", "01", "1.0" and "1 " name no row (int() and
    pydantic would read them as 10 or 1, so two URLs would serve one row)."""
    if isinstance(value, str) and not re.fullmatch(r"0|[1-9][0-9]*", value):  # its size: the schema's maximum
        raise ValueError("a row key is decimal digits, without sign, leading zeros or separators")
    return value


def _whole_number(value):
    """A JSON number with no fraction is an integer (JSON Schema says so: 17917.0 is 17917); strings and
    booleans stay refused (the models are strict)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


RowKey = Annotated[int, PathParam(ge=0, le=MAX_KEY, description="a row's key (a hit's `key`): decimal digits"),
                   BeforeValidator(_decimal_key)]
WholeNumber = BeforeValidator(_whole_number)


# A search's k and filters, as every search route takes them (strict: "5" is not 5, a stray field is a
# 422, so a typo never silently widens a search). The SDK's `check_filters` validates them after this.
class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    k: Annotated[int, WholeNumber] = Field(20, ge=1, le=LIMITS.max_k, description="hits to return")
    camera: str | Annotated[list[str], Field(max_length=LIMITS.max_cameras)] | None = Field(
        None, description="a camera name, or a list (rows of any of them)")
    since: float | None = Field(None, description="earliest time, seconds on the gallery's clock")
    until: float | None = Field(None, description="latest time, seconds on the gallery's clock")
    per_track: bool = Field(True, description="at most one hit per track")
    min_quality: float | None = Field(None, ge=0, le=1, description="only crops scored at least this (0-1: how "
                                      "surely the crop shows one whole person; rows without a score are kept)")


# POST /query: search by description.
class TextQuery(Filters):
    text: str = Field(..., min_length=1, max_length=LIMITS.max_text, description="a description of the person")


# POST /query/image as JSON: "find similar" to a stored row.
class SimilarQuery(Filters):
    key: Annotated[int, WholeNumber] = Field(..., ge=0, le=MAX_KEY,
                                             description="a stored row's key: find people who look like it")


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


# A search's answer. The gallery's size is GET /info's: counting it here cost every shard a look per query.
class QueryOut(BaseModel):
    hits: list[HitOut]
    took_ms: float


def shows_paths(key) -> bool:
    """Whether a caller sees the server's file paths: admins and the local user of a service without keys
    do; a viewer sees a source's file name only (where the server keeps its footage is not a viewer's
    business, and tells an attacker where to look)."""
    return key is None or key.role == "admin"


def source_name(path: str, full: bool) -> str:
    """A source as a caller may see it: the path itself, or its last part only (`shows_paths`)."""
    return path if full else PurePath(path).name or path


def hit_json(row: Row, paths: bool = True) -> dict:
    """A row as the API shows it (`HitOut`): no crop path of the server, the evidence by key instead.

    Args:
        row: a hit or a stored row.
        paths: whether `source` is the full path (admins) or its file name only (viewers; `shows_paths`).

    Returns:
        The JSON-ready dict, with `crop_url` and `frame_url` under /api/v1.
    """
    return {"key": row.key, "score": row.score, "camera": row.camera, "timestamp": row.timestamp,
            "frame": row.frame, "bbox": [int(v) for v in row.bbox], "track": row.track, "person": row.person,
            "quality": row.quality,
            "source": source_name(row.source, paths), "superseded": row.superseded,
            "crop_url": f"{API}/crops/{row.key}.jpg", "frame_url": f"{API}/frames/{row.key}.jpg"}
