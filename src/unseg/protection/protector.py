"""The protection API: image + prompt in, exactly bounded protected image out.

``Protector`` wraps a noise generator. For each image it fits the pixels and the prompt into the
square model input (stretched onto the square by default, or letterboxed: ``fit``), runs the
generator (batched), then takes the noise to pixels through :mod:`unseg.protection.perturb` (the
path training and evaluation share): mapped back to the image's native resolution, saturated
(unless ``saturate=False``) and added under the per-pixel budget (ε on the protected region, ε_bg
elsewhere), so the bound holds exactly on every output pixel for any size or aspect ratio. These
stages run in torch on the generator's device.

The native-size stages run one strip of rows at a time (:mod:`unseg.protection.strips`): the
noise is mapped up per strip (:class:`~unseg.protection.perturb.NativeNoise`), saturation takes
its per-segment channel means (the region, the rest, each object) from a first pass over the
strips, and the budget, L∞, PSNR and SSIM are computed per strip. An image then costs its integer input, output and region mask plus
bounded temporaries.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from skimage.draw import disk

import unseg
from unseg.budget import DEFAULT_BUDGET, Budget
from unseg.data.images import LoadedImage, as_loaded
from unseg.data.prompts import DEFAULT_KEY, ImagePrompt
from unseg.data.transforms import DEFAULT_FIT, INPUT_FITS, InputFit, image_to_model_input
from unseg.devices import resolve_device
from unseg.models import (
    GENERATOR_PRESETS,
    ImageFeatures,
    NoiseGenerator,
    PromptBatch,
    build_generator,
    load_model,
    load_sam_weights,
)
from unseg.models.config import code_index
from unseg.models.prompts import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT, PADDING
from unseg.protection.perturb import NativeNoise, map_to_native
from unseg.protection.quality import image_quality
from unseg.protection.refine import Refiner
from unseg.protection.strips import row_strips

DEFAULT_WEIGHTS = Path(unseg.__file__).parent / "weights" / "default_generator.safetensors"
FALLBACK_PRESET = "small"
UNTRAINED_MESSAGE = "UNTRAINED generator: noise is not optimised, protection will be weak"


@dataclass
class ProtectionResult:
    """One protected image.

    Attributes:
        pixels: protected pixels, same dtype and shape as the input pixels.
        alpha: the input's alpha channel, unchanged (or None).
        region: ``H x W`` bool, where ε applied (ε_bg elsewhere).
        native: the noise, computed per strip of rows (see :attr:`noise`).
        stats: linf_inside / linf_outside (levels), psnr, ssim, num_objects, prompt kind, counts.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None
    region: np.ndarray
    native: NativeNoise = field(repr=False)
    stats: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def noise(self) -> np.ndarray:
        """``H x W x 3`` float32 unit noise in [-1, 1] at native resolution (before the budget).

        Made on first access: protection itself never holds it whole (12 bytes per pixel)."""
        return self.native.full()


class Protector:
    """Makes images unlearnable with a (trained) UnSeg noise generator.

    Build with :meth:`load`. ``protect`` handles one image, ``protect_batch`` a list with one
    generator forward pass per distinct prompt length (usually exactly one; see ``_forward``).
    """

    def __init__(
        self,
        generator: NoiseGenerator,
        *,
        name: str,
        trained: bool,
        metadata: dict[str, Any] | None = None,
        device: str | torch.device = "cpu",
        budget: Budget = DEFAULT_BUDGET,
        batch_size: int = 4,
        saturate: bool = True,
        refiner: Refiner | None = None,
        fit: str = DEFAULT_FIT,
    ) -> None:
        if not isinstance(budget, Budget):
            raise TypeError(f"budget must be a unseg.budget.Budget, got {budget!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if fit not in INPUT_FITS:
            raise ValueError(f"fit must be one of {', '.join(INPUT_FITS)}, got {fit!r}")
        self.device = resolve_device(device)
        self.generator = generator.to(self.device).eval()
        self.name = name
        self.trained = trained
        self.metadata = metadata or {}
        self.budget = budget
        self.batch_size = batch_size
        self.saturate = saturate
        self.refiner = refiner
        self.fit = fit

    @classmethod
    def load(
        cls,
        path_or_preset: str | Path = "default",
        device: str | torch.device = "cpu",
        budget: Budget | None = None,
        seed: int = 0,
        sam_checkpoint: str | Path | None = None,
        batch_size: int = 4,
        saturate: bool = True,
        refiner: Refiner | None = None,
        fit: str = DEFAULT_FIT,
    ) -> "Protector":
        """A protector from the shipped weights ("default"), a preset name or a checkpoint path.

        "default" uses ``unseg/weights/default_generator.safetensors`` when it exists; otherwise,
        and for any preset name ("small", "vit_b"), the generator is randomly initialised from
        ``seed`` and ``trained`` is False (with a warning). ``sam_checkpoint`` loads official SAM
        weights into a preset's SAM part. Checkpoints saved with metadata ``trained: false``
        count as untrained. ``budget`` None: the checkpoint's stored protection budget (a trained
        run's ``epsilon.protect`` / ``epsilon.protect_bg``, :func:`stored_budget`), else
        :data:`~unseg.budget.DEFAULT_BUDGET`. ``saturate`` (default) applies
        :func:`~unseg.protection.perturb.saturate` to the generator's noise; False keeps the
        raw generator output. ``refiner``: moves part of each image's budget against a frozen
        interactive segmenter after the generator (:mod:`unseg.protection.refine`). ``fit``: how
        each image enters the generator's square input (:data:`unseg.data.transforms.INPUT_FITS`):
        ``square`` (default, :data:`~unseg.data.transforms.DEFAULT_FIT`: stretched, so the noise pattern
        sits in the same relative place on every image, as a victim that resizes to a fixed size sees
        it) or ``letterbox`` (aspect kept and padded, as the generator was trained).
        """
        source = resolve_generator_source(path_or_preset, sam_checkpoint)
        if source in GENERATOR_PRESETS:
            generator = _seeded_generator(source, seed)
            metadata: dict[str, Any] = {"preset": source, "seed": seed}
            if sam_checkpoint is not None:
                load_sam_weights(generator, sam_checkpoint)
                metadata["sam_checkpoint"] = str(sam_checkpoint)
            trained = False
        else:
            if sam_checkpoint is not None:
                raise ValueError("sam_checkpoint applies to a preset generator (small, vit_b), not to a checkpoint file")
            if not Path(source).is_file():
                raise FileNotFoundError(
                    f"generator {source!r} is neither a preset ({', '.join(sorted(GENERATOR_PRESETS))}, default) "
                    "nor an existing checkpoint file"
                )
            generator, metadata = load_model(source, kind="generator")
            trained = bool(metadata.get("trained", True))
        if not trained:
            warnings.warn(UNTRAINED_MESSAGE, stacklevel=2)
        if budget is None:
            budget = stored_budget(metadata) or DEFAULT_BUDGET
        return cls(generator, name=source, trained=trained, metadata=metadata, device=device,
                   budget=budget, batch_size=batch_size, saturate=saturate, refiner=refiner, fit=fit)

    def with_budget(self, budget: Budget) -> "Protector":
        """The same generator (shared, not copied) with another budget."""
        return Protector(self.generator, name=self.name, trained=self.trained, metadata=self.metadata,
                         device=self.device, budget=budget, batch_size=self.batch_size, saturate=self.saturate,
                         refiner=self.refiner, fit=self.fit)

    @property
    def input_size(self) -> int:
        """Side of the square model input."""
        return self.generator.config.sam.img_size

    def describe(self) -> dict[str, Any]:
        """Generator and budget facts for a manifest."""
        facts = {"generator": self.name, "trained": self.trained, "saturate": self.saturate, "fit": self.fit}
        return facts if self.refiner is None else {**facts, "refine": self.refiner.describe()}

    def protect(
        self,
        image: np.ndarray | Image.Image | str | Path,
        mask: np.ndarray | None = None,
        box: np.ndarray | list | None = None,
        points: np.ndarray | list | None = None,
        point_labels: np.ndarray | list | None = None,
        objects: list[np.ndarray] | None = None,
    ) -> ProtectionResult:
        """Protect one image (array ``H x W[ x C]`` uint8/uint16, PIL image or file path).

        ``box`` may hold one box (x0, y0, x1, y1) or several (``K x 4``); ``points`` is ``K x 2``;
        ``objects`` is a list of per-object masks (see :class:`ImagePrompt`).
        The result's pixels have the input's dtype and shape.
        """
        loaded, squeeze = as_loaded(image)
        prompt = ImagePrompt(mask=mask, boxes=box, points=points, point_labels=point_labels, objects=objects)
        result = self.protect_batch([loaded], [prompt])[0]
        if squeeze:
            result.pixels = result.pixels[..., 0]
        return result

    def protect_batch(self, images: list[LoadedImage], prompts: list[ImagePrompt]) -> list[ProtectionResult]:
        """Protect several images; prompts pair with images by position (each checked against its
        image first, :meth:`ImagePrompt.check_fits`)."""
        for loaded, prompt in zip(images, prompts):
            prompt.check_fits(*loaded.size)
        return self.protect_fitted(images, prompts)

    def protect_fitted(self, images: list[LoadedImage], prompts: list[ImagePrompt]) -> list[ProtectionResult]:
        """:meth:`protect_batch` for prompts already checked against their images (as
        :meth:`unseg.data.sources.ProtectItem.prompt` returns them): the same output."""
        natives = self._native_noise(images, prompts)
        return [self._finish(loaded, prompt, native) for loaded, prompt, native in zip(images, prompts, natives)]

    def noise_batch(self, images: list[LoadedImage], prompts: list[ImagePrompt]) -> list[NativeNoise]:
        """The noise :meth:`protect_batch` adds, without adding it: per image its unit noise at
        native size (saturated unless ``saturate=False``; ``.full()`` makes the ``H x W x 3``
        array) and its region (``.region``). No budget, no statistics, nothing written: for
        callers that apply the budget themselves (the evaluation)."""
        for loaded, prompt in zip(images, prompts):
            prompt.check_fits(*loaded.size)
        return self._native_noise(images, prompts)

    def _native_noise(self, images: list[LoadedImage], prompts: list[ImagePrompt]) -> list[NativeNoise]:
        """Generator passes for a batch, then each image's noise mapped to native size (per strip,
        on the generator's device), with its region, saturated unless ``saturate=False``, then
        refined image by image when there is a refiner (outputs stay independent of batching)."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        if not images:
            return []
        boxes = [INPUT_FITS[self.fit](*loaded.size, size=self.input_size) for loaded in images]
        noise, logits, object_noise, background = self._forward(images, prompts, boxes)
        flat_objects = self.generator.config.flat_codes
        natives = []
        for i, (prompt, box) in enumerate(zip(prompts, boxes)):
            objects = [] if object_noise[i] is None else list(zip(prompt.objects, object_noise[i]))
            native = NativeNoise(box, noise[i], objects, _region(prompt, box, logits[i]),
                                 None if background is None else background[i], flat_objects=flat_objects)
            natives.append(native.saturated() if self.saturate else native)
        if self.refiner is not None:
            natives = [self.refiner.refine(loaded.pixels, prompt, native, self.budget)
                       for loaded, prompt, native in zip(images, prompts, natives)]
        return natives

    @torch.no_grad()
    def _forward(
        self, images: list[LoadedImage], prompts: list[ImagePrompt], boxes: list[InputFit]
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor | None], torch.Tensor | None]:
        """Noise and mask logits over the model input for every image, per-object noise, and for a
        keyed generator the background noise (the same prompt, no code: the head's noise alone).

        A keyed generator decodes the whole prompt with the code of ``prompt.key`` and each object
        with the code of its own key (:func:`unseg.models.config.code_index`; key 0 = the null
        code, zero noise).

        Prompt tokens are padded only among images with the same number of tokens (one forward
        pass per distinct count): SAM's padding tokens take part in attention, so padding an
        image's prompt to the batch's longest one would make its noise depend on its neighbours
        in the batch. Grouping keeps each output independent of how images are batched.
        """
        inputs = torch.cat([image_to_model_input(box, loaded.pixels, self.device) for loaded, box in zip(images, boxes)])
        features = self.generator.encode(inputs)
        tokens = [_prompt_tokens(prompt, box) for prompt, box in zip(prompts, boxes)]
        masks = [_mask_input(prompt.mask, box) for prompt, box in zip(prompts, boxes)]
        noise: list[torch.Tensor | None] = [None] * len(images)
        logits: list[torch.Tensor | None] = [None] * len(images)
        background: list[torch.Tensor | None] = [None] * len(images)
        keyed = self.generator.config.keyed
        for count in sorted({len(labels) for _, labels in tokens}):
            group = [i for i, (_, labels) in enumerate(tokens) if len(labels) == count]
            batch = _prompt_batch([tokens[i] for i in group], [masks[i] for i in group], self.input_size).to(self.device)
            rows = features.select(torch.tensor(group, device=self.device))
            out = self.generator.decode(rows, batch, self._codes([prompts[i].key for i in group]))
            for row, index in enumerate(group):
                noise[index], logits[index] = out.noise[row].float(), out.mask_logits[row].float()
            if keyed:
                uncoded = self.generator.decode(rows, batch).noise
                for row, index in enumerate(group):
                    background[index] = uncoded[row].float()
        backgrounds = torch.stack(background) if keyed else None  # type: ignore[arg-type]
        return (torch.stack(noise), torch.stack(logits), self._object_noise(features, prompts, boxes),  # type: ignore[arg-type]
                backgrounds)

    def _object_noise(self, features: ImageFeatures, prompts: list[ImagePrompt],
                      boxes: list[InputFit]) -> list[torch.Tensor | None]:
        """Per image, ``K x 3 x N x N`` noise made with each object's own mask prompt (None: no objects).

        Object prompts are mask-only (no tokens), so they batch without padding.
        """
        jobs = [(index, _mask_input(mask, boxes[index]), key)
                for index, prompt in enumerate(prompts)
                for mask, key in zip(prompt.objects or [], prompt.keys or [DEFAULT_KEY] * len(prompt.objects or []))]
        found: dict[int, list[torch.Tensor]] = {}
        chunk = 4 * self.batch_size
        for start in range(0, len(jobs), chunk):
            part = jobs[start : start + chunk]
            rows = torch.tensor([index for index, _, _ in part], device=self.device)
            batch = _prompt_batch([_NO_TOKENS] * len(part), [mask for _, mask, _ in part], self.input_size)
            out = self.generator.decode(features.select(rows), batch.to(self.device), self._codes([k for _, _, k in part]))
            for row, (index, _, _) in enumerate(part):
                found.setdefault(index, []).append(out.noise[row].float())
        return [torch.stack(found[i]) if i in found else None for i in range(len(prompts))]

    def _codes(self, keys: list[int]) -> torch.Tensor | None:
        """Code indices of object keys for a keyed generator (None for an unkeyed one)."""
        config = self.generator.config
        if not config.keyed:
            return None
        return torch.tensor([code_index(key, config.num_codes) for key in keys], dtype=torch.long, device=self.device)

    def _finish(self, loaded: LoadedImage, prompt: ImagePrompt, native: NativeNoise) -> ProtectionResult:
        """Budget and statistics, strip by strip (bounded memory)."""
        pixels, (inside, outside) = native.protect(loaded.pixels, self.budget)
        region = native.region
        levels = self.budget.levels(int(np.iinfo(loaded.pixels.dtype).max))
        stats: dict[str, Any] = {
            "linf_inside": inside,
            "linf_outside": outside,
            "epsilon_levels": levels[0],
            "epsilon_bg_levels": levels[1],
            **image_quality(loaded.pixels, pixels, self.device),
            "num_objects": prompt.object_count,
            "keyed": self.generator.config.keyed,
            "keying": prompt.keying,
            "keys": list(prompt.keys) if prompt.keys is not None else ([prompt.key] if prompt.kind != "none" else []),
            "prompt": prompt.kind,
            "num_boxes": prompt.num_boxes,
            "num_points": prompt.num_points,
            "region_fraction": float(region.mean()),
        }
        return ProtectionResult(pixels=pixels, alpha=loaded.alpha, region=region, stats=stats, native=native)


def stored_budget(metadata: dict[str, Any]) -> Budget | None:
    """The protection budget a generator checkpoint recommends (``unseg train`` stores the run's
    ``epsilon.protect`` / ``epsilon.protect_bg`` as ``recommended_epsilon`` / ``_bg`` fractions),
    or None when it records none."""
    if "recommended_epsilon" not in metadata:
        return None
    epsilon = float(metadata["recommended_epsilon"])
    return Budget.from_fractions(epsilon, float(metadata.get("recommended_epsilon_bg", 0.0)))


def resolve_generator_source(path_or_preset: str | Path, sam_checkpoint: str | Path | None = None) -> str:
    """"default" -> the shipped weights file (or the ``small`` preset when there is none, or when
    SAM weights are to be loaded into a preset); anything else unchanged."""
    source = str(path_or_preset)
    if source != "default":
        return source
    return str(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.is_file() and sam_checkpoint is None else FALLBACK_PRESET


def _seeded_generator(preset: str, seed: int) -> NoiseGenerator:
    """Randomly initialised preset generator; same seed, same weights (global RNG left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_generator(preset)


def _prompt_tokens(prompt: ImagePrompt, box: InputFit) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (as corner pairs, labels 2/3) and points (labels 1/0) in model-input coordinates."""
    coords, labels = [np.zeros((0, 2), np.float32)], [np.zeros(0, np.int64)]
    if prompt.boxes is not None:
        corners = box.points_to_input(prompt.boxes.reshape(-1, 2))
        coords.append(corners)
        labels.append(np.tile([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], prompt.num_boxes))
    if prompt.points is not None:
        coords.append(box.points_to_input(prompt.points))
        labels.append(prompt.point_labels)
    return np.concatenate(coords).astype(np.float32), np.concatenate(labels).astype(np.int64)


def _mask_input(mask: np.ndarray | None, box: InputFit) -> torch.Tensor | None:
    """A mask prompt resized (bilinear, antialiased) into the square model input, or None."""
    if mask is None:
        return None
    tensor = torch.from_numpy(mask.astype(np.float32))[None, None]
    return box.image_to_input(tensor, mode="bilinear")[0]


_NO_TOKENS = (np.zeros((0, 2), np.float32), np.zeros(0, np.int64))


def _prompt_batch(tokens: list[tuple[np.ndarray, np.ndarray]], masks: list[torch.Tensor | None], size: int) -> PromptBatch:
    """Stack per-image tokens (padded with -1 to the longest) and mask prompts into a PromptBatch."""
    count = max(len(labels) for _, labels in tokens)
    coords = torch.zeros(len(tokens), count, 2)
    labels = torch.full((len(tokens), count), PADDING, dtype=torch.long)
    for row, (xy, lab) in enumerate(tokens):
        coords[row, : len(lab)] = torch.from_numpy(xy)
        labels[row, : len(lab)] = torch.from_numpy(lab)
    if all(mask is None for mask in masks):
        return PromptBatch(coords=coords, labels=labels)
    stacked = torch.stack([torch.zeros(1, size, size) if mask is None else mask for mask in masks])
    has_mask = torch.tensor([mask is not None for mask in masks])
    return PromptBatch(coords=coords, labels=labels, masks=stacked, has_mask=has_mask)


def _point_disc_radius(height: int, width: int) -> int:
    """Radius of the disc kept around each positive point: 2% of the longer side, at least 2 px."""
    return max(2, round(0.02 * max(height, width)))


def _region(prompt: ImagePrompt, box: InputFit, logits: torch.Tensor) -> np.ndarray:
    """Where ε applies (``H x W`` bool): the mask; else the union of boxes; else the predicted mask
    (``logits``: ``1 x M x M`` over the model input) plus point discs."""
    height, width = box.height, box.width
    if prompt.mask is not None:
        return prompt.mask.copy()
    region = np.zeros((height, width), dtype=bool)
    if prompt.boxes is not None:
        for x0, y0, x1, y1 in prompt.boxes:
            top, left = max(0, int(np.floor(y0))), max(0, int(np.floor(x0)))
            bottom, right = min(height, int(np.ceil(y1))), min(width, int(np.ceil(x1)))
            region[top:bottom, left:right] = True
        return region
    if prompt.points is not None:
        for start, stop in row_strips(height, width):
            region[start:stop] = (map_to_native(logits, box, start, stop)[0] > 0).cpu().numpy()
        radius = _point_disc_radius(height, width)
        for (x, y), label in zip(prompt.points, prompt.point_labels):
            if label == 1:
                rows, cols = disk((y, x), radius, shape=(height, width))
                region[rows, cols] = True
    return region
