"""Prompt templates for zero-shot classification: each label becomes one embedding per template."""

from __future__ import annotations

from typing import Mapping, Sequence

from .errors import ClippingEdgeError

# CLIP's 7-template ensemble for ImageNet (Radford et al. 2021, the "prompt engineering" notebook):
# the subset of the 80 below that its authors found to do as well as all 80.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)

# CLIP's 80-template ImageNet ensemble: renditions (photo, drawing, sculpture, toy, tattoo, ...) and
# photo conditions (bad, blurry, dark, cropped, ...). Slower to build, sometimes a little more accurate.
IMAGENET_80_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.", "a painting of a {}.",
    "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.", "a cropped photo of a {}.",
    "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.", "a blurry photo of the {}.",
    "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.", "a {} in a video game.",
    "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.", "a photo of a {}.",
    "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.",
    "a sketch of the {}.", "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.",
    "a jpeg corrupted photo of the {}.", "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.",
    "a photo of the small {}.", "a photo of the weird {}.", "the cartoon {}.", "art of the {}.",
    "a drawing of the {}.", "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.",
    "a dark photo of a {}.", "itap of a {}.", "graffiti of the {}.", "a toy {}.",
    "itap of my {}.", "a photo of a cool {}.", "a photo of a small {}.", "a tattoo of the {}.",
)

TEMPLATE_SETS: dict[str, tuple[str, ...]] = {"7": DEFAULT_TEMPLATES, "80": IMAGENET_80_TEMPLATES}


def template_set(name: str, dataset_templates: Sequence[str] | None = None) -> list[str]:
    """`dataset` (the dataset's zeroshot.json templates, else the 7), `7` or `80`."""
    if name == "dataset":
        return list(dataset_templates or DEFAULT_TEMPLATES)
    if name not in TEMPLATE_SETS:
        raise ClippingEdgeError(f"unknown template set {name!r}: use dataset, 7 or 80")
    return list(TEMPLATE_SETS[name])


def fill(template: str, name: str) -> str:
    """The prompt for one class name: the template's `{}` replaced, or the name appended to a template without one."""
    return template.replace("{}", name) if "{}" in template else f"{template} {name}"


def check_templates(templates: Sequence[str] | str) -> list[str]:
    """One rule for every template, wherever it comes from: text with at most one `{}` (where the class name
    goes; without one the name is appended) and no other brace. A lone string is one template."""
    if isinstance(templates, str):
        templates = [templates]
    templates = list(templates)
    if not templates:
        raise ClippingEdgeError("the template list is empty: pass at least one template such as 'a photo of a {}.'")
    for template in templates:
        if not isinstance(template, str) or not template.strip():
            raise ClippingEdgeError(f"template {template!r} is not text: pass templates such as 'a photo of a {{}}.'")
        rest = template.replace("{}", "", 1)
        if "{" in rest or "}" in rest:
            problem = "has two {} slots" if "{}" in rest else "has a brace other than one {} slot"
            raise ClippingEdgeError(f"template {template!r} {problem}: write one {{}} where the class name goes, "
                                    "and no other braces, such as 'a photo of a {}.'")
    return templates


def check_synonyms(synonyms: Mapping[str, Sequence[str] | str] | None) -> dict[str, list[str]]:
    """label -> its names; a lone string is one name, never its characters."""
    if synonyms is None:
        return {}
    if not isinstance(synonyms, Mapping):
        raise ClippingEdgeError(f"synonyms must map each label to a list of names, got {type(synonyms).__name__}: "
                                'pass {"cat": ["cat", "kitten"]}')
    checked = {}
    for label, names in synonyms.items():
        names = [names] if isinstance(names, str) else list(names)
        if not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise ClippingEdgeError(f"synonyms of {label!r} must be a non-empty list of names, got {names!r}: "
                                    'pass {"cat": ["cat", "kitten"]}')
        checked[str(label)] = names
    return checked
