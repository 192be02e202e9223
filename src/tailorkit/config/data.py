"""`data:` — where the examples come from, how splits are carved, chat columns, image transforms,
and the data-quality sections (config/quality.py)."""

from __future__ import annotations

import codecs
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tailorkit.config.base import Strict
from tailorkit.config.quality import AugmentConfig, CleanConfig

FORMATS = ("alpaca", "sharegpt", "messages", "prompt_completion", "text")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_CROP_FRACTION = 0.875  # resize to size / 0.875 (256 for 224), then centre-crop size


class ChatColumns(BaseModel):
    """Where each format keeps its fields (recipe section `data.chat`); change one when a file
    names it differently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instruction: str = Field("instruction", description="alpaca: the instruction.")
    input: str = Field("input", description="alpaca, optional: appended to the instruction.")
    output: str = Field("output", description="alpaca: the response.")
    system: str = Field("system", description="alpaca, optional: a system message.")
    conversations: str = Field("conversations", description="sharegpt: the list of turns.")
    sharegpt_role: str = Field("from", description="sharegpt: the speaker key of a turn.")
    sharegpt_content: str = Field("value", description="sharegpt: the text key of a turn.")
    messages: str = Field("messages", description="messages: the list of turns.")
    messages_role: str = Field("role", description="messages: the role key of a turn.")
    messages_content: str = Field("content", description="messages: the text key of a turn.")
    prompt: str = Field("prompt", description="prompt_completion: the prompt.")
    completion: str = Field("completion", description="prompt_completion: the response.")
    text: str = Field("text", description="text: a plain document (continued pre-training).")

    def required(self, fmt: str) -> tuple[str, ...]:
        """The columns a format cannot do without."""
        return {
            "alpaca": (self.instruction, self.output),
            "sharegpt": (self.conversations,),
            "messages": (self.messages,),
            "prompt_completion": (self.prompt, self.completion),
            "text": (self.text,),
        }[fmt]


class ImageTransformConfig(BaseModel):
    """How images become model inputs. Train and evaluation share size, mean and std."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    size: int = Field(224, ge=8, description="Side of the square model input.")
    resize: int | None = Field(None, ge=8, description="Shorter side before the crop; "
                                                       "default size / 0.875 (256 for 224).")
    mean: tuple[float, float, float] = Field(IMAGENET_MEAN, description="Per-channel mean (RGB, 0-1).")
    std: tuple[float, float, float] = Field(IMAGENET_STD, description="Per-channel std (RGB, 0-1).")
    augment: Literal["none", "basic", "strong"] = Field(
        "basic", description="Training only. basic: resize + random crop; strong: random resized "
                             "crop + colour jitter; none: resize + centre crop as evaluation.")
    hflip: bool = Field(True, description="Training only: flip half the images left-right "
                                          "(turn off where the mirror image is another class, e.g. digits).")
    crop_scale: tuple[float, float] = Field((0.25, 1.0), description="strong: area fraction range of "
                                                                     "the random resized crop.")
    crop_ratio: tuple[float, float] = Field((3 / 4, 4 / 3), description="strong: aspect ratio range.")
    jitter: float = Field(0.3, ge=0.0, lt=1.0, description="strong: brightness, contrast and saturation "
                                                           "each scaled by a factor in 1 +- jitter.")
    mixup: float = Field(0.0, ge=0.0, le=10.0, description="Training batches: mixup's Beta(alpha, alpha) "
                                                          "alpha (Zhang et al. 2018), e.g. 0.2; 0 is off.")
    cutmix: float = Field(0.0, ge=0.0, le=10.0, description="Training batches: CutMix's Beta(alpha, alpha) "
                                                           "alpha (Yun et al. 2019), e.g. 1.0; 0 is off.")
    mix_prob: float = Field(1.0, gt=0.0, le=1.0, description="mixup/cutmix: share of training batches "
                                                             "mixed (the others keep one-hot targets).")
    switch_prob: float = Field(0.5, ge=0.0, le=1.0, description="mixup and cutmix both on: share of the "
                                                                "mixed batches that use cutmix.")

    @field_validator("std")
    @classmethod
    def _positive_std(cls, std: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(std) <= 0:
            raise ValueError("every std must be positive")
        return std

    @model_validator(mode="after")
    def _ranges(self) -> ImageTransformConfig:
        if self.resize is not None and self.resize < self.size:
            raise ValueError(f"resize ({self.resize}) must be at least size ({self.size})")
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio must satisfy 0 < low <= high, got {self.crop_ratio}")
        return self

    @property
    def mixes(self) -> bool:
        """Training batches are mixed (mixup or cutmix), so their targets are soft."""
        return self.mixup > 0 or self.cutmix > 0

    @property
    def resize_to(self) -> int:
        return self.resize or int(round(self.size / EVAL_CROP_FRACTION))


class SplitConfig(Strict):
    validation: float = Field(0.1, ge=0.0, lt=1.0, description="Fraction of the train file carved out.")
    test: float = Field(0.1, ge=0.0, lt=1.0, description="Fraction of the train file carved out.")
    seed: int = Field(0, description="Seed of the split; fixed so runs are comparable.")
    stratify: bool = Field(True, description="Keep class proportions (classification only).")


class DataConfig(Strict):
    name: str | None = Field(None, description="Catalogue dataset (bbc-news, tweet-sentiment).")
    train: str | None = Field(None, description="Train file: CSV, JSONL, Parquet or a datasets folder.")
    validation: str | None = Field(None, description="Validation file; else split from train.")
    test: str | None = Field(None, description="Test file; else split from train.")
    text_column: str = Field("text", description="Column holding the input text.")
    text_pair_column: str | None = Field(None, description="Second text for pair tasks.")
    label_column: str = Field("label", description="Column holding the label or target.")
    encoding: str = Field("utf-8", description="Text encoding of the CSV, TSV and JSON files "
                                               "(e.g. cp1252, latin-1); auto detects it "
                                               "(charset-normalizer) and says what it found.")
    split: SplitConfig = Field(default_factory=SplitConfig,
                               description="How missing validation/test splits are carved (section).")
    format: Literal["auto", "alpaca", "sharegpt", "messages", "prompt_completion", "text"] = Field(
        "auto", description="causal_lm: the instruction layout; auto detects it from the columns.")
    template: str | None = Field(
        None, description="causal_lm: chat template name (chatml, alpaca, plain) or Jinja text; "
                          "default: the tokenizer's own.")
    chat: ChatColumns = Field(default_factory=ChatColumns,
                              description="causal_lm: column names of each format (section).")
    image_column: str = Field("image", description="image_classification tables: the image path column.")
    skip_bad: bool = Field(False, description="image_classification: skip unreadable images (counted) "
                                              "instead of stopping.")
    image: ImageTransformConfig = Field(default_factory=ImageTransformConfig,
                                        description="image_classification: resize, crop, augmentation, "
                                                    "normalisation (section).")
    mlm_probability: float = Field(0.15, gt=0.0, lt=1.0,
                                   description="mlm: fraction of tokens masked (80% [MASK], 10% random, "
                                               "10% kept).")
    max_train_samples: int | None = Field(None, ge=1, description="Seeded subset of train.")
    max_eval_samples: int | None = Field(None, ge=1, description="Seeded subset of validation/test.")
    clean: CleanConfig | None = Field(None, description="Repair and filter the data, each change "
                                                        "recorded (section; `clean: {}` takes the "
                                                        "defaults); images: duplicates and leakage only.")
    augment: AugmentConfig | None = Field(None, description="classification, regression, mlm: add edited "
                                                            "copies of training rows (section).")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        if encoding == "auto":
            return encoding
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"unknown text encoding {encoding!r} "
                             "(e.g. utf-8, cp1252, latin-1, auto)") from None
        return encoding

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.name is None) == (self.train is None):
            raise ValueError("give exactly one of data.name (catalogue) or data.train (a file)")
        return self
