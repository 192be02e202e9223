"""Every typed config of a recipe, at the bottom of the package: it imports nothing else of tailorkit.

base        Strict, and the one-line error format
model       model:            data      data:, data.split, data.chat, data.image
train       train:            generation generation:
methods     methods: (MethodSpec; each method registers its own options)
tasks       the registered task names
search      search:           space     its dotted paths, checked and applied
quality     data.clean, data.augment
compress    compress: (StepSpec; each compression step registers its own options)
plugins     the name + typed options entries of methods: and compress.steps:
metrics     metric names and their direction
recipe      Recipe, the whole file
study       a study file (`tailor study`): base recipe, variants, seeds
"""

from tailorkit.config.base import Strict, format_validation_error
from tailorkit.config.compress import COMPRESS_CONFIGS, CompressConfig, StepConfig, StepSpec
from tailorkit.config.data import ChatColumns, DataConfig, ImageTransformConfig, SplitConfig
from tailorkit.config.generation import GenerationConfig
from tailorkit.config.methods import METHOD_CONFIGS, MethodConfig, MethodSpec
from tailorkit.config.model import ModelConfig
from tailorkit.config.quality import AugmentConfig, CleanConfig
from tailorkit.config.recipe import Recipe
from tailorkit.config.search import CategoricalParam, FloatParam, IntParam, PruningConfig, SearchConfig
from tailorkit.config.study import StudyConfig, VariantConfig
from tailorkit.config.train import EarlyStopping, TrainConfig

__all__ = ["COMPRESS_CONFIGS", "METHOD_CONFIGS", "AugmentConfig", "CategoricalParam", "ChatColumns",
           "CleanConfig", "CompressConfig", "DataConfig", "EarlyStopping", "FloatParam", "GenerationConfig",
           "ImageTransformConfig", "IntParam", "MethodConfig", "MethodSpec", "ModelConfig",
           "PruningConfig", "Recipe", "SearchConfig", "SplitConfig", "StepConfig", "StepSpec",
           "Strict", "StudyConfig", "TrainConfig", "VariantConfig", "format_validation_error"]
