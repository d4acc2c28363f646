"""The built-in ordinal tasks: rank values, labels, and zero-shot prompt templates."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    name: str
    values: list[float]
    templates: list[str]  # each has one "{}" filled with the rank's word
    rank_words: list[str]
    labels: list[str] | None = None
    unit: str | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        if len(self.rank_words) != len(self.values):
            raise ValueError(
                f"{self.name}: {len(self.rank_words)} words for {len(self.values)} ranks"
            )
        if not self.templates or any("{}" not in t for t in self.templates):
            raise ValueError(f"{self.name}: every template needs a '{{}}' for the rank")

    def prompts(self, rank: int) -> list[str]:
        return [template.format(self.rank_words[rank]) for template in self.templates]


AGE = TaskSpec(
    name="age",
    values=[float(v) for v in range(101)],
    rank_words=[str(v) for v in range(101)],
    templates=[
        "a photo of a {} year old person.",
        "a face of a person who is {} years old.",
        "age estimation: the age of the person is {}.",
        "a close-up photo of a {}-year-old person.",
        "a portrait of someone aged {}.",
    ],
    unit="years",
    description="Apparent age of the person in the photo, 0 to 100 years.",
)

AESTHETICS = TaskSpec(
    name="aesthetics",
    values=[1.0, 2.0, 3.0, 4.0, 5.0],
    labels=["unacceptable", "flawed", "ordinary", "professional", "exceptional"],
    rank_words=["an unacceptable", "a flawed", "an ordinary", "a professional", "an exceptional"],
    templates=[
        "{} photo.",
        "aesthetics: this is {} photograph.",
        "{} quality picture.",
        "a photograph of {} standard.",
    ],
    unit="grade",
    description="Aesthetic grade of the photograph, 1 (unacceptable) to 5 (exceptional).",
)

DECADE = TaskSpec(
    name="decade",
    values=[1930.0, 1940.0, 1950.0, 1960.0, 1970.0],
    labels=["1930s", "1940s", "1950s", "1960s", "1970s"],
    rank_words=["1930s", "1940s", "1950s", "1960s", "1970s"],
    templates=[
        "a photo taken in the {}.",
        "a historical color photo from the {}.",
        "an old photograph from the {}.",
        "a picture of daily life in the {}.",
    ],
    unit="decade",
    description="Decade in which a historical colour photo was taken, 1930s to 1970s.",
)

BUILTIN_TASKS: dict[str, TaskSpec] = {t.name: t for t in (AGE, AESTHETICS, DECADE)}


def parse_values(raw: str) -> list[float]:
    """``"0:100"`` (inclusive range, step 1), ``"0:100:5"`` or ``"1930,1940,1950"``."""
    if ":" in raw:
        parts = [float(p) for p in raw.split(":")]
        if len(parts) not in (2, 3):
            raise ValueError(f"range {raw!r} must be start:stop or start:stop:step")
        start, stop, step = parts[0], parts[1], parts[2] if len(parts) == 3 else 1.0
        count = round((stop - start) / step) + 1
        return [start + i * step for i in range(count)]
    return [float(v) for v in raw.split(",") if v.strip()]
