"""The JSON manifests that describe registry artifacts (see ``model_store/README.md``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FORMAT_VERSION = 1


class WeightsSource(BaseModel):
    """Where a backbone's weights came from: an open_clip pretrained tag, a file, or random."""

    model_config = ConfigDict(allow_inf_nan=False)

    kind: Literal["pretrained", "random", "fine-tuned"]
    tag: str | None = None
    seed: int | None = None
    note: str | None = None


class Preprocess(BaseModel):
    """open_clip's eval transform settings; they travel with the backbone."""

    model_config = ConfigDict(allow_inf_nan=False)

    image_size: int = Field(gt=0)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"
    resize_mode: Literal["shortest", "longest", "squash"] = "shortest"


DetectorName = Literal["haar", "yunet", "mtcnn"]


class FaceCropSpec(BaseModel):
    """How a task's images were cropped to faces; recorded in its manifest so that serving
    (``faces=true``) cuts the same crops. It lives with the manifests, not with the face
    code, so that reading a registry needs no detector."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detector: DetectorName = "haar"
    margin: float = Field(0.5, ge=0, description="square side = (1 + margin) x box side")
    size: int = Field(224, gt=0, description="crop side in pixels, before the eval transform")


class BackboneManifest(BaseModel):
    """A CLIP vision tower: ``visual.safetensors`` plus this manifest."""

    # No NaN or infinity in any number a prediction uses (values, logit_scale, mean, std).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    format_version: int = FORMAT_VERSION
    kind: Literal["backbone"] = "backbone"
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    architecture: str
    embed_dim: int = Field(gt=0)
    vision_cfg: dict[str, Any]
    quick_gelu: bool = False
    weights: WeightsSource
    preprocess: Preprocess
    files: dict[str, str] = Field(description="file name -> sha256 hex digest")
    created_at: str | None = None


class Calibration(BaseModel):
    """How a task version was calibrated, and what that changed on the calibration list.

    The temperature divides the logit scale; the interval mass replaces the nominal central
    mass, for ``level`` only, so that the served interval covers about ``level`` of answers
    on data like the calibration list (split conformal, finite-sample corrected).
    """

    model_config = ConfigDict(extra="forbid")

    method: str = "temperature (NLL) + split-conformal central mass"
    temperature: float = Field(gt=0, description="served scale = logit_scale / temperature")
    level: float = Field(gt=0, lt=1, description="the promised coverage the mass was fitted for")
    interval_mass: float = Field(gt=0, le=1, description="central mass served for ``level``")
    n: int = Field(gt=0, description="calibration images")
    list_sha256: str = Field(description="sha256 of the calibration list file")
    coverage_before: float = Field(ge=0, le=1, description="at ``level``, uncalibrated")
    coverage_after: float = Field(ge=0, le=1, description="at ``level``, as now served")
    nll_before: float = Field(ge=0)
    nll_after: float = Field(ge=0)
    source_version: str | None = Field(None, description="the version that was calibrated")


class TaskManifest(BaseModel):
    """An ordinal task: ``prototypes.safetensors`` (R x D, L2-normalised) plus this manifest."""

    # No NaN or infinity in any number a prediction uses (values, logit_scale, mean, std).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    format_version: int = FORMAT_VERSION
    kind: Literal["task"] = "task"
    task: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    backbone: str
    values: list[float] = Field(min_length=2)
    labels: list[str] | None = None
    unit: str | None = None
    description: str | None = None
    logit_scale: float = Field(gt=0, description="s in softmax(s * cos), not its log")
    files: dict[str, str]
    metrics: dict[str, Any] = Field(default_factory=dict)
    provenance: dict[str, Any] = Field(default_factory=dict)
    calibration: Calibration | None = None
    crop: FaceCropSpec | None = Field(
        None,
        description="set when trained on face crops (``fit --crop faces``); None: whole images",
    )
    created_at: str | None = None

    @model_validator(mode="after")
    def _check_ranks(self) -> TaskManifest:
        if any(b <= a for a, b in zip(self.values, self.values[1:], strict=False)):
            raise ValueError("values must be strictly increasing (they are ordered ranks)")
        if self.labels is not None and len(self.labels) != len(self.values):
            raise ValueError(f"{len(self.labels)} labels for {len(self.values)} values")
        return self

    @property
    def num_ranks(self) -> int:
        return len(self.values)

    def serving_logit_scale(self) -> float:
        """The ``s`` to serve in softmax(s * cos): the calibrated one when there is one."""
        if self.calibration is None:
            return self.logit_scale
        return self.logit_scale / self.calibration.temperature

    def interval_mass(self, level: float) -> float:
        """Central probability mass to serve for a promised ``level``.

        The calibrated mass when this version was calibrated for that level; else the level
        itself (the interval is then only as good as the probabilities).
        """
        calibration = self.calibration
        if calibration is not None and abs(calibration.level - level) < 1e-9:
            return calibration.interval_mass
        return level
