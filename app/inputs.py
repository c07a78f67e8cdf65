"""Every request input in its one canonical form, parsed the same way on every route.

Strict on purpose: one image has one URL, and a value that only a lenient parser reads
as a number (``"256"`` for a size, ``true`` in a latent, ``٨`` for 8, ``0256``) is a
mistake worth telling its sender about, not guessing at. The rules:

- JSON bodies take JSON types: sizes are JSON integers, truncation and latent entries
  JSON numbers, names and slugs strings. Seeds are JSON integers or decimal strings
  (JavaScript numbers lose digits above 2^53).
- Path and query values are text in JSON's own notation, ASCII only: ``42`` (not
  ``042``, ``+42`` or `` 42``), ``0.5`` (not ``.5`` or ``nan``).
- Categories are the model's lower-case slugs (``smileys-emotion``), models their
  store names (``emoji``), versions positive integers (``1``, not ``1.0``).

Each parser raises ``ValueError`` with a message that states the rule and never the
value (app/errors.py turns it into a 422 naming the field). The ``Annotated`` types
below carry the parser and the OpenAPI schema together, so a route that uses them is
parsed and documented alike.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from model_store import MAX_SEED, NAME_PATTERN

UNSIGNED = re.compile(r"0|[1-9][0-9]{0,19}", re.ASCII)  # JSON's integer grammar, no sign
NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", re.ASCII)
SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*", re.ASCII)
MAX_NAME = 64  # characters in a model name or category slug
MAX_NUMBER_TEXT = 32  # characters in a number written in a query
LATENT_BOUND = 10.0  # |z| above this is no draw from N(0, 1): refused as a likely mistake
MAX_Z_DIM = 4096
MIN_SIZE, MAX_SIZE = 8, 2048  # output edge in pixels; bounds checked by app/specs.py, where
# DNE_MAX_SIZE is known (the schema states the served top: app/openapi.py)
MAX_TRUNCATION = 2.0


def decimal_at_most(limit: int) -> str:
    """A regular expression for the decimals 0 .. ``limit`` without leading zeros, so a
    schema can state a 64-bit bound on a string (JSON Schema bounds only numbers)."""
    digits = str(limit)
    parts = ["0", f"[1-9][0-9]{{0,{len(digits) - 2}}}"]  # every shorter number
    for i, d in enumerate(digits):  # as long: the same first i digits, then a smaller one
        low = 1 if i == 0 else 0
        if int(d) > low:
            parts.append(f"{digits[:i]}[{low}-{int(d) - 1}][0-9]{{{len(digits) - i - 1}}}")
    parts.append(digits)
    return "^(" + "|".join(parts) + ")$"


# --- text (paths and queries) and JSON primitives ----------------------------------------


def unsigned_text(value: str) -> int:
    if not UNSIGNED.fullmatch(value):
        raise ValueError("must be a decimal integer: ASCII digits, no sign or leading zeros")
    return int(value)


def number_text(value: str) -> float:
    if len(value) > MAX_NUMBER_TEXT or not NUMBER.fullmatch(value):
        raise ValueError("must be a finite number written like 0.5 (ASCII, JSON notation)")
    return finite(float(value))


def json_integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a JSON integer")
    return value


def json_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a JSON number")
    try:
        return finite(float(value))
    except OverflowError:  # an integer too large for a float
        raise ValueError("must be a finite number") from None


def finite(x: float) -> float:
    if not math.isfinite(x):
        raise ValueError("must be a finite number")
    return x


def text(parse: Any) -> Any:
    """``parse`` for a path or query value, which always arrives as a string."""

    def parse_text(value: Any) -> Any:
        if not isinstance(value, str):  # defaults and already-parsed values
            return value
        return parse(value)

    return parse_text


# --- one parser per field --------------------------------------------------------------


def parse_seed(value: Any) -> int:
    """A JSON integer or a decimal string, 0 .. 2^64 - 1 (the same rule in paths)."""
    if isinstance(value, str):
        n = unsigned_text(value)
    elif isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer or a decimal string")
    else:
        n = value
    if not 0 <= n <= MAX_SEED:
        raise ValueError(f"must be in 0 .. {MAX_SEED} (unsigned 64-bit)")
    return n


def parse_truncation(value: float) -> float:
    if not 0 <= value <= MAX_TRUNCATION:
        raise ValueError(f"must be in 0 .. {MAX_TRUNCATION:g}")
    return value


def parse_latent_value(value: Any) -> float:
    x = json_number(value)
    if abs(x) > LATENT_BOUND:
        raise ValueError(f"must be in -{LATENT_BOUND:g} .. {LATENT_BOUND:g}")
    return x


def parse_latent(value: Any) -> list[float]:
    if not isinstance(value, list):
        raise ValueError("must be a JSON array of numbers")
    if not 1 <= len(value) <= MAX_Z_DIM:
        raise ValueError(f"must hold 1 .. {MAX_Z_DIM} numbers")
    values = []
    for i, item in enumerate(value):
        try:
            values.append(parse_latent_value(item))
        except ValueError as exc:
            raise ValueError(f"entry {i} {exc}") from None
    return values


def parse_category(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_NAME or not SLUG.fullmatch(value):
        raise ValueError("must be a category slug: lower-case ASCII words joined by '-'")
    return value


def parse_model_name(value: Any) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise ValueError("must be a model name: lower-case ASCII letters, digits, '-', '_'")
    return value


def parse_version(value: int) -> int:
    if value < 1:
        raise ValueError("must be 1 or more")
    return value


# --- the types routes use: parser and schema together ------------------------------------

SEED_STRING = decimal_at_most(MAX_SEED)
SEED_DOC = "an unsigned 64-bit integer; JSON bodies may give it as a decimal string"
SIZE_SCHEMA = {"type": "integer", "minimum": MIN_SIZE, "maximum": MAX_SIZE}
TRUNCATION_SCHEMA = {"type": "number", "minimum": 0, "maximum": MAX_TRUNCATION}
CATEGORY_SCHEMA = {"type": "string", "pattern": f"^{SLUG.pattern}$", "maxLength": MAX_NAME}
MODEL_SCHEMA = {"type": "string", "pattern": NAME_PATTERN.pattern}

Seed = Annotated[
    int,
    BeforeValidator(parse_seed),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
                {"type": "string", "pattern": SEED_STRING},
            ],
            "description": SEED_DOC,
        }
    ),
]
SeedText = Annotated[
    int,
    BeforeValidator(text(parse_seed)),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_SEED}),
]
Size = Annotated[int, BeforeValidator(json_integer), WithJsonSchema(SIZE_SCHEMA)]
SizeText = Annotated[int, BeforeValidator(text(unsigned_text)), WithJsonSchema(SIZE_SCHEMA)]
Truncation = Annotated[
    float,
    BeforeValidator(lambda v: parse_truncation(json_number(v))),
    WithJsonSchema(TRUNCATION_SCHEMA),
]
TruncationText = Annotated[
    float,
    BeforeValidator(text(lambda v: parse_truncation(number_text(v)))),
    WithJsonSchema(TRUNCATION_SCHEMA),
]
Latent = Annotated[
    list[float],
    BeforeValidator(parse_latent),
    WithJsonSchema(
        {
            "type": "array",
            "items": {"type": "number", "minimum": -LATENT_BOUND, "maximum": LATENT_BOUND},
            "minItems": 1,
            "maxItems": MAX_Z_DIM,
            "description": "exactly the model's z_dim numbers (GET /models)",
        }
    ),
]
Category = Annotated[str, BeforeValidator(parse_category), WithJsonSchema(CATEGORY_SCHEMA)]
ModelName = Annotated[str, BeforeValidator(parse_model_name), WithJsonSchema(MODEL_SCHEMA)]
VersionText = Annotated[
    int,
    BeforeValidator(text(lambda v: parse_version(unsigned_text(v)))),
    WithJsonSchema({"type": "integer", "minimum": 1}),
]


class LatentPoint(BaseModel):
    """One point of a model's latent space: a seed or a latent vector, exactly one."""

    model_config = ConfigDict(extra="forbid")

    seed: Seed | None = None
    latent: Latent | None = None

    @model_validator(mode="after")
    def exactly_one_source(self) -> LatentPoint:
        if (self.seed is None) == (self.latent is None):
            raise ValueError("give exactly one of seed or latent")
        return self


class ImageChoices(BaseModel):
    """The image options of a JSON body: model, category, truncation, size."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: ModelName | None = None
    category: Category | None = None
    truncation: Truncation = 1.0
    size: Size | None = None


class GenerateBody(LatentPoint, ImageChoices):
    """``POST /generate``: a point and the image options, as JSON."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


# --- the latent space: interpolations, arithmetic, grids --------------------------------

MAX_FRAMES = 64  # frames of one interpolation (each counts as a request)
MAX_FPS = 50  # GIF timing is in hundredths of a second: 50 fps is 2 of them
MAX_TERMS = 8  # latents in one weighted sum
MAX_WEIGHT = 10.0
MAX_TILES = 64  # images in one grid
MAX_GRID_EDGE = MAX_SIZE  # pixels along either side of a whole grid


def within(parse: Any, low: float, high: float) -> Any:
    """``parse``, then a check that the value lies in ``low`` .. ``high``."""

    def parse_within(value: Any) -> Any:
        x = parse(value)
        if not low <= x <= high:
            raise ValueError(f"must be {low:g} .. {high:g}")
        return x

    return parse_within


def integer_schema(low: int, high: int) -> WithJsonSchema:
    return WithJsonSchema({"type": "integer", "minimum": low, "maximum": high})


Frames = Annotated[
    int, BeforeValidator(within(json_integer, 2, MAX_FRAMES)), integer_schema(2, MAX_FRAMES)
]
Fps = Annotated[
    float,
    BeforeValidator(within(json_number, 1, MAX_FPS)),
    WithJsonSchema({"type": "number", "minimum": 1, "maximum": MAX_FPS}),
]
Weight = Annotated[
    float,
    BeforeValidator(within(json_number, -MAX_WEIGHT, MAX_WEIGHT)),
    WithJsonSchema({"type": "number", "minimum": -MAX_WEIGHT, "maximum": MAX_WEIGHT}),
]
TilesText = Annotated[
    int,
    BeforeValidator(text(within(unsigned_text, 1, MAX_TILES))),
    integer_schema(1, MAX_TILES),
]


def strict_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


Flag = Annotated[bool, BeforeValidator(strict_bool), WithJsonSchema({"type": "boolean"})]


class InterpolateBody(ImageChoices):
    """``POST /interpolate``: two points and how to travel between them."""

    start: LatentPoint = Field(alias="from", description="the first frame")
    end: LatentPoint = Field(alias="to", description="the last frame")
    steps: Frames = Field(16, description="frames, both ends included (each counts as a request)")
    mode: Literal["slerp", "lerp"] = Field(
        "slerp", description="slerp keeps every frame at the prior's scale; lerp sags midway"
    )
    format: Literal["gif", "webp", "png"] = Field(
        "gif", description="gif (composited on white), webp (alpha), png (a strip of frames)"
    )
    fps: Fps = Field(12.0, description="frames per second (gif and webp)")
    bounce: Flag = Field(False, description="play forward then back, so the loop has no jump")


class Term(LatentPoint):
    weight: Weight = 1.0


class ArithmeticBody(ImageChoices):
    """``POST /arithmetic``: a weighted sum of latents."""

    terms: list[Term] = Field(min_length=1, max_length=MAX_TERMS)
    rescale: Flag = Field(
        True,
        description="divide the sum by √(Σ weight²), which puts a sum of independent seeds "
        "back on the prior's scale (without it, 1·a − 1·b + 1·c is √3 times too long)",
    )
