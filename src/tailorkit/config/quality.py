"""`data.clean:` and `data.augment:` — data quality steps run in the data stage, before encoding.

Cleaning runs in a fixed order (repair, garbled, length, duplicates and label conflicts, near
duplicates, leakage, label errors) on the splits it names, after the splits are carved, so no
decision about one split reads another except leakage removal, which only ever removes rows of
the training side. Augmentation touches the training split only, after `max_train_samples`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tailorkit.config.base import Strict

EDA_OPS = ("synonym", "insert", "swap", "delete")


class CleanConfig(Strict):
    """What `data.clean` removes or repairs; every removal is recorded with its reason."""

    splits: list[Literal["train", "validation", "test"]] = Field(
        ["train", "validation"], description="Splits cleaned. The test split is left as given by "
                                             "default, so runs on raw and cleaned data score the same rows.")
    fix_text: bool = Field(True, description="Repair mojibake and odd Unicode with ftfy; NFC-normalise.")
    strip_html: bool = Field(True, description="Unescape HTML entities (&amp;) and remove tags.")
    whitespace: bool = Field(True, description="Remove control characters; collapse runs of whitespace.")
    garbled: Literal["keep", "strip", "drop"] = Field(
        "strip", description="Characters no repair recovers (U+FFFD, private-use, unassigned): strip "
                             "removes them (a row left empty is dropped), drop removes the row.")
    min_words: int = Field(1, ge=0, description="Drop rows with fewer words (after repair).")
    max_words: int | None = Field(None, ge=1, description="Drop rows with more words.")
    min_chars: int = Field(1, ge=0, description="Drop rows with fewer characters.")
    max_chars: int | None = Field(None, ge=1, description="Drop rows with more characters.")
    dedupe: bool = Field(True, description="Exact duplicates on normalised text (case, accents, "
                                           "HTML escapes and spacing ignored): keep the first.")
    near_duplicates: float | None = Field(
        None, gt=0.0, le=1.0, description="Also drop near duplicates: estimated Jaccard similarity of "
                                          "character 5-grams at or above this (MinHash LSH), e.g. 0.8; "
                                          "images: 1 - mean absolute difference of 32x32 grayscale "
                                          "thumbnails (pHash candidates), e.g. 0.98.")
    label_conflicts: Literal["drop", "majority", "keep"] = Field(
        "majority", description="Duplicates with different labels: drop all, keep one with the majority "
                                "label (a tie drops all; regression: the median), or keep one per label.")
    leakage: bool = Field(True, description="Remove training and validation rows whose text (exactly, "
                                            "or nearly with near_duplicates) is in the test split; "
                                            "training rows also against validation.")
    label_errors: Literal["off", "flag", "remove"] = Field(
        "flag", description="classification: likely label errors of the training split by confident "
                            "learning (cleanlab) on out-of-fold logistic-regression probabilities "
                            "(see label_error_features); flag records them, remove drops them.")
    label_error_features: Literal["tfidf", "encoder"] = Field(
        "tfidf", description="What the out-of-fold logistic regression reads: tfidf (word 1-2-grams, "
                             "seconds) or encoder (a frozen encoder's mean-pooled features, computed "
                             "once and cached on disk; the model is label_error_model).")
    label_error_model: str | None = Field(
        None, description="encoder: the encoder (catalogue name or folder); null: the run's model.name "
                          "(tailor data clean: --model).")
    label_error_folds: int = Field(5, ge=2, le=20, description="Cross-validation folds of the "
                                                                "out-of-fold probabilities.")
    seed: int = Field(0, description="Seed of MinHash and of the label-error folds.")

    @field_validator("label_errors", mode="before")
    @classmethod
    def _off_as_yaml_reads_it(cls, value):
        """YAML 1.1 reads a bare `off` as false."""
        return "off" if value is False else value

    @model_validator(mode="after")
    def _model_needs_encoder(self) -> CleanConfig:
        if self.label_error_model is not None and self.label_error_features != "encoder":
            raise ValueError("label_error_model is read only with label_error_features: encoder")
        return self


class BackTranslationConfig(Strict):
    """Paraphrases by translating each training row to a pivot language and back, through two
    local seq2seq model folders (e.g. MarianMT en-de and de-en); greedy, so deterministic."""

    forward: str = Field(description="Seq2seq model folder (or catalogue name) from the data's language "
                                     "to the pivot language.")
    backward: str = Field(description="Seq2seq model folder (or catalogue name) from the pivot language "
                                      "back.")
    max_length: int = Field(128, ge=8, le=1024, description="Tokens read from each row, and most generated "
                                                            "per translation (also at most twice the "
                                                            "source's tokens + 8).")
    num_beams: int = Field(1, ge=1, le=8, description="Beam search width (1: greedy).")
    batch_size: int = Field(16, ge=1, le=256, description="Rows translated at once.")


class ParaphraseConfig(Strict):
    """Paraphrases of each training row by a local instruction-tuned causal LM, sampled under a
    seed; with label_filter, those a classifier of the original rows labels otherwise are dropped."""

    model: str = Field("smollm2-135m", description="Chat model (catalogue name or folder) that writes "
                                                  "the paraphrases.")
    prompt: str = Field("Paraphrase the following text. Keep its meaning and reply with the paraphrase "
                        "only.\n\n{text}", description="The user message; {text} is the row's text.")
    max_new_tokens: int = Field(64, ge=1, le=1024, description="Most tokens generated per paraphrase.")
    temperature: float = Field(0.7, gt=0.0, le=2.0, description="Sampling temperature.")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    label_filter: bool = Field(True, description="classification: drop paraphrases whose label a TF-IDF + "
                                                 "logistic-regression model of the original rows disagrees "
                                                 "with (recorded as rejected).")
    seed: int = Field(0, description="Seed of the sampling.")

    @model_validator(mode="after")
    def _has_text(self) -> ParaphraseConfig:
        if "{text}" not in self.prompt:
            raise ValueError("prompt must contain {text}, where the row's text goes")
        try:
            self.prompt.format(text="")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"prompt: only {{text}} may be in braces (write {{{{ }}}} for a brace): "
                             f"{err}") from None
        return self


class AugmentConfig(Strict):
    """EDA (Wei & Zou 2019): new training rows made by small word edits of existing ones."""

    ops: list[Literal["synonym", "insert", "swap", "delete"]] = Field(
        list(EDA_OPS), min_length=1, description="EDA operations; each new row applies one, drawn at "
                                                 "random: synonym replacement, random insertion of a "
                                                 "synonym, random swap, random deletion.")
    alpha: float = Field(0.1, gt=0.0, le=0.5, description="Share of a row's words each operation "
                                                           "changes (at least one).")
    per_example: int = Field(1, ge=0, le=32, description="New rows made from each training row.")
    balance: bool = Field(False, description="Give rarer classes more new rows, up to the size of the "
                                             "largest class (classification).")
    max_per_class: int | None = Field(None, ge=1, description="Cap on a class's rows after augmentation "
                                                              "(originals are never removed).")
    synonyms: Literal["auto", "wordnet", "embeddings"] = Field(
        "auto", description="Where synonyms come from: WordNet when its data is installed (Debian "
                            "wordnet-base), else the nearest neighbours in the model's embedding matrix.")
    wordnet_dir: str = Field("/usr/share/wordnet", description="The WordNet 3.0 database folder.")
    seed: int = Field(0, description="Seed of every random choice: the same seed gives the same rows.")
    back_translation: BackTranslationConfig | None = Field(
        None, description="Also add one back-translated copy of each training row (section), on top of "
                          "the EDA rows; per_example: 0 gives back-translation alone.")

    paraphrase: ParaphraseConfig | None = Field(
        None, description="Also add one paraphrase of each training row written by a local chat model "
                          "(section), on top of the EDA rows.")

    @model_validator(mode="after")
    def _something_to_add(self) -> AugmentConfig:
        if self.per_example == 0 and not self.balance and self.back_translation is None \
                and self.paraphrase is None:
            raise ValueError("per_example is 0, balance is off and there is no back_translation or "
                             "paraphrase: nothing would be added")
        return self
