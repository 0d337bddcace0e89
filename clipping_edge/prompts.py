"""Prompt templates for zero-shot classification: each label becomes one embedding per template."""

# CLIP's 7-template ensemble for ImageNet (Radford et al. 2021, the "prompt engineering" notebook).
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)
