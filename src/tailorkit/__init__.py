"""tailorkit: tailor pretrained models to your task from one YAML recipe."""

__version__ = "0.1.0"
