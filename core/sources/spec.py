"""The structured form of a source, as stored in MongoDB's `sources` collection and accepted as
JSON by `/api/v1/sources/{source_id}`. What a schema cannot say (four points that span no
quadrilateral, zones in cm without a calibration) is checked by `core.sources.setup`.

A source is what the `source-id` header of an image names. Everything here is optional: a source
without a document (or with an empty one) is analysed as before, with the scale guessed from
coasters and mugs, every rule, and the worker's model.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, StrictBool, model_validator

from core.rules.spec import Tag
from core.webhooks import EndpointName

# The source id as the `source-id` header carries it, limited to what reads well in a URL path.
SOURCE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
# Strict: a number, never `true` or "12" (the document says number; JSON has no other).
Coordinate = Annotated[FiniteFloat, Field(ge=-1e6, le=1e6, strict=True)]
Point = tuple[Coordinate, Coordinate]
Length = Annotated[FiniteFloat, Field(gt=0, le=1e5, strict=True)]
_ZONE_NAME = r"^[^\x00]{1,64}$"  # a key MongoDB can store (no NUL), short enough to show


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Distances(_Strict):
    """Real distances between the four calibration points A, B, C, D, in cm: the four sides and
    the diagonal AC fix the quadrilateral; the other diagonal BD, when given, is checked."""

    ab: Length
    bc: Length
    cd: Length
    da: Length
    ac: Length
    bd: Length | None = None


class ScaleCalibration(_Strict):
    """A camera looking straight down: one scale for the whole picture."""

    kind: Literal["scale"]
    px_per_cm: Length


class FourPointCalibration(_Strict):
    """An angled camera: four points on the table plane as the picture shows them (clockwise:
    A far-left, B far-right, C near-right, D near-left) and their real size, either as a
    rectangle (a sheet of A4 paper, the table top) or as the distances between them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={  # the check below, stated for clients
            "oneOf": [
                {"required": ["rectangle_cm"], "properties": {"rectangle_cm": {"type": "array"}}},
                {"required": ["distances_cm"], "properties": {"distances_cm": {"type": "object"}}},
            ]
        },
    )

    kind: Literal["four_points"]
    image_points: tuple[Point, Point, Point, Point]
    rectangle_cm: tuple[Length, Length] | None = Field(
        None, description="Width (A to B) and depth (B to C) when the four points are a rectangle."
    )
    distances_cm: Distances | None = None
    table_top: StrictBool = Field(
        False,
        description="The four points are the corners of the table top (with rectangle_cm): its "
        "edges are then known exactly, rather than read from the detector's table box, which "
        "an angled view distorts.",
    )

    @model_validator(mode="after")
    def _one_size(self) -> FourPointCalibration:
        if (self.rectangle_cm is None) == (self.distances_cm is None):
            raise ValueError("give exactly one of rectangle_cm and distances_cm")
        return self


class Zone(_Strict):
    """A named placement zone: a polygon in table-plane cm (needs a calibration) or image px."""

    polygon: list[Point] = Field(min_length=3, max_length=64)
    unit: Literal["cm", "px"] = "px"


class RuleTags(_Strict):
    """Only the rules carrying at least one of these tags apply to the source."""

    tags: list[Tag] = Field(min_length=1, max_length=16)


class Sampling(_Strict):
    """How camera ingestion samples the source: at most one frame every `interval_s` (0: every
    frame), keeping the latest frame when the pipeline falls behind or every frame."""

    interval_s: Annotated[FiniteFloat, Field(ge=0, le=86_400, strict=True)] = 0.0
    keep: Literal["latest", "all"] = "latest"


class SourceSpec(_Strict):
    name: str = Field("", max_length=200)
    description: str = Field("", max_length=2_000)
    calibration: (
        Annotated[ScaleCalibration | FourPointCalibration, Field(discriminator="kind")] | None
    ) = None
    zones: dict[Annotated[str, Field(pattern=_ZONE_NAME)], Zone] = Field(
        default_factory=dict,
        max_length=32,
        json_schema_extra={"propertyNames": {"pattern": _ZONE_NAME}},  # pydantic states values only
    )
    rules: Literal["all"] | RuleTags = "all"
    model: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}:[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$",
        description="name:version of the model that serves this source; null: the worker's.",
        examples=["mugdet-synth:1.1.0"],
    )
    sampling: Sampling = Field(default_factory=Sampling)
    max_age_s: Annotated[FiniteFloat, Field(gt=0, le=86_400, strict=True)] | None = Field(
        None,
        description="Frames older than this (from `captured-at`, else `submitted-at`, else when "
        "they were produced) when the pipeline reaches them are not analysed: their result is "
        "`expired`. Null: every frame is analysed, however late.",
    )
    webhooks: list[EndpointName] = Field(
        default_factory=list,
        max_length=16,
        description="Webhook endpoints that receive every alert raised on this source, besides "
        "those its rules' webhook actions name.",
    )
