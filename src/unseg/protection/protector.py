"""The protection API: image + prompt in, exactly bounded protected image out.

``Protector`` wraps a noise generator. For each image it letterboxes the pixels and the prompt
into the square model input, runs the generator (batched), maps the noise back to the image's
native resolution, saturates it (:func:`unseg.protection.budget.saturate_noise`, unless
``saturate=False``) and adds it under the per-pixel budget (ε on the protected region, ε_bg
elsewhere) with :func:`unseg.protection.budget.apply_budget`, so the bound holds exactly on every
output pixel for any size or aspect ratio.

The native-size stages run one strip of rows at a time (:mod:`unseg.protection.strips`): the
noise is mapped up per strip (:class:`NativeNoise`), saturation takes its per-region channel
means from a first pass over the strips, and the budget, L∞, PSNR and SSIM are computed per
strip. An image then costs its integer input, output and region mask plus bounded temporaries.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from skimage.draw import disk

import unseg
from unseg.data.images import LoadedImage, loaded_from_pil, read_image
from unseg.data.transforms import Letterbox, image_to_model_input
from unseg.models import GENERATOR_PRESETS, ImageFeatures, NoiseGenerator, PromptBatch, build_generator, load_model, load_sam_weights
from unseg.models.config import code_index
from unseg.models.prompts import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT, PADDING
from unseg.protection.budget import (
    DEFAULT_EPSILON,
    DEFAULT_EPSILON_BG,
    apply_budget,
    budget_levels,
    measured_linf,
    segment_channel_means,
    segment_channel_sums,
    saturate_noise,
)
from unseg.protection.quality import image_quality
from unseg.protection.strips import row_strips

DEFAULT_WEIGHTS = Path(unseg.__file__).parent / "weights" / "default_generator.safetensors"
DEFAULT_KEY = 1  # the key of an object whose source names none (a box, points, a binary mask)
FALLBACK_PRESET = "small"
UNTRAINED_MESSAGE = "UNTRAINED generator: noise is not optimised, protection will be weak"


@dataclass
class ImagePrompt:
    """What to protect in one image, in image pixel coordinates.

    Attributes:
        mask: ``H x W`` bool region of the object(s), or None.
        boxes: ``K x 4`` boxes (x0, y0, x1, y1), or None.
        points: ``K x 2`` points (x, y), or None.
        point_labels: ``K`` labels, 1 positive / 0 negative; None means all positive.
        num_objects: how many objects the prompt covers, when the source knows (instances or
            labelled regions in a mask); else derived (1 per mask, box or positive point).
        objects: optional list of ``H x W`` bool masks, one per object (instances, class regions).
            Each object then gets the noise the generator makes for its own mask prompt (one
            decoder pass per object, the image is encoded once); the rest of the image keeps the
            noise of the whole prompt. ``mask`` defaults to their union.
        keys: optional integer key per entry of ``objects`` (class id, instance index): a keyed
            generator gives each key its own noise code (key 0 = the null code, no noise), so
            adjacent objects of different keys get different textures; None = every object key 1.
        key: the key of the whole prompt (a mask, boxes or points without ``objects``); default 1.
        keying: how the source chose the keys ("class", "instance"), recorded in the manifest.

    An empty prompt (all None) means the image has no object: only ε_bg applies.
    """

    mask: np.ndarray | None = None
    boxes: np.ndarray | None = None
    points: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    num_objects: int | None = None
    objects: list[np.ndarray] | None = None
    keys: list[int] | None = None
    key: int = DEFAULT_KEY
    keying: str | None = None

    def __post_init__(self) -> None:
        if self.key < 0:
            raise ValueError(f"key must be >= 0, got {self.key}")
        if self.keys is not None:
            if self.objects is None or len(self.keys) != len(self.objects):
                raise ValueError("keys need objects, one key per object")
            if any(int(k) < 0 for k in self.keys):
                raise ValueError(f"object keys must be >= 0, got {list(self.keys)}")
        if self.objects is not None:
            keys = [DEFAULT_KEY] * len(self.objects) if self.keys is None else [int(k) for k in self.keys]
            kept = [(mask, k) for mask, k in zip((np.asarray(m).astype(bool) for m in self.objects), keys) if mask.any()]
            if any(mask.ndim != 2 or mask.shape != kept[0][0].shape for mask, _ in kept):
                raise ValueError("objects must be H x W masks of one size")
            self.objects = [mask for mask, _ in kept] or None  # no non-empty object: as if none were given
            self.keys = [k for _, k in kept] if self.keys is not None and kept else None
        if self.objects is not None:
            if self.mask is None:
                self.mask = np.logical_or.reduce(self.objects)
            if self.num_objects is None:
                self.num_objects = len(self.objects)
        if self.mask is not None:
            self.mask = np.asarray(self.mask).astype(bool)
            if self.mask.ndim != 2:
                raise ValueError(f"mask must be H x W, got shape {self.mask.shape}")
            if not self.mask.any():
                self.mask = None  # an empty mask selects nothing
        if self.boxes is not None:
            self.boxes = _finite(np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4), "boxes")
            bad = (self.boxes[:, 2] <= self.boxes[:, 0]) | (self.boxes[:, 3] <= self.boxes[:, 1])
            if bad.any():
                raise ValueError(f"boxes need x1 > x0 and y1 > y0, got {self.boxes[bad][0].tolist()}")
            if not len(self.boxes):
                self.boxes = None
        if self.points is not None:
            self.points = _finite(np.asarray(self.points, dtype=np.float64).reshape(-1, 2), "points")
            labels = np.ones(len(self.points), np.int64) if self.point_labels is None else self.point_labels
            labels = np.asarray(labels).reshape(-1)
            if labels.shape != (len(self.points),) or not np.isin(labels, (0, 1)).all():
                raise ValueError(f"point_labels must be one 0/1 label per point, got {labels.tolist()}")
            self.point_labels = labels.astype(np.int64)
            if not len(self.points):
                self.points, self.point_labels = None, None
        elif self.point_labels is not None:
            raise ValueError("point_labels given without points")

    @property
    def kind(self) -> str:
        """"mask", "box", "points", combinations joined by "+", or "none"."""
        parts = [name for name, value in (("mask", self.mask), ("box", self.boxes), ("points", self.points))
                 if value is not None]
        return "+".join(parts) or "none"

    @property
    def num_boxes(self) -> int:
        return 0 if self.boxes is None else len(self.boxes)

    @property
    def num_points(self) -> int:
        return 0 if self.points is None else len(self.points)

    def check_fits(self, height: int, width: int) -> None:
        """Raise ValueError if the mask size differs from the image or a box/point lies outside it."""
        if self.mask is not None and self.mask.shape != (height, width):
            raise ValueError(f"mask {self.mask.shape[1]}x{self.mask.shape[0]} does not match image {width}x{height}")
        if self.objects is not None and self.objects[0].shape != (height, width):
            raise ValueError(f"object masks {self.objects[0].shape[1]}x{self.objects[0].shape[0]} do not match "
                             f"image {width}x{height}")
        if self.boxes is not None:
            outside = (self.boxes[:, 2] <= 0) | (self.boxes[:, 3] <= 0) | (self.boxes[:, 0] >= width) | (
                self.boxes[:, 1] >= height)
            if outside.any():
                raise ValueError(f"box {self.boxes[outside][0].tolist()} lies outside the {width}x{height} image")
        if self.points is not None:
            x, y = self.points[:, 0], self.points[:, 1]
            outside = (x < 0) | (y < 0) | (x >= width) | (y >= height)
            if outside.any():
                raise ValueError(f"point {self.points[outside][0].tolist()} lies outside the {width}x{height} image")


def _finite(array: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(array).all():
        raise ValueError(f"{what} must be finite numbers")
    return array


@dataclass
class NativeNoise:
    """One image's unit noise at its native resolution, made one strip of rows at a time.

    Attributes:
        box: the image's letterbox (native size and model input size).
        grid: ``3 x N x N`` noise over the model input, for the whole prompt.
        objects: per object, its ``H x W`` bool mask and the ``3 x N x N`` noise made with its
            own mask prompt, which replaces ``grid``'s on the mask (where objects overlap, the
            later one wins).
        region: ``H x W`` bool, where ε applies.
        background: ``3 x N x N`` noise used off ``region`` instead of ``grid`` (a keyed
            generator's background: the prompt's noise without a code), or None (``grid`` everywhere).
        means: ``(2 + K) x 3`` channel means of the segments (:meth:`segment_rows`: the region
            outside the objects, off the region, then each object) removed before the sign when the
            noise is saturated (:meth:`saturated`); None for the generator's raw noise.
    """

    box: Letterbox
    grid: np.ndarray
    objects: list[tuple[np.ndarray, np.ndarray]]
    region: np.ndarray
    background: np.ndarray | None = None
    means: np.ndarray | None = None

    def raw_rows(self, start: int, stop: int) -> np.ndarray:
        """``(stop - start) x W x 3`` float32 generator noise of those rows, objects composed in."""
        noise = self.box.map_rows_to_image(self.grid, start, stop)
        if self.background is not None:
            outside = ~self.region[start:stop]
            if outside.any():
                noise[outside] = self.box.map_rows_to_image(self.background, start, stop)[outside]
        for mask, grid in self.objects:
            part = mask[start:stop]
            if part.any():
                noise[part] = self.box.map_rows_to_image(grid, start, stop)[part]
        return noise

    def segment_rows(self, start: int, stop: int) -> np.ndarray:
        """``(stop - start) x W`` segment labels: 0 on the region outside every object, 1 off the
        region, ``2 + k`` on object ``k`` (the later object where they overlap). Each segment is
        saturated with its own means, so every object keeps its own noise code."""
        segments = (~self.region[start:stop]).astype(np.int32)
        for k, (mask, _) in enumerate(self.objects):
            segments[mask[start:stop]] = 2 + k
        return segments

    def rows(self, start: int, stop: int) -> np.ndarray:
        """The noise the budget gets for those rows: saturated with the whole image's means, or raw."""
        noise = self.raw_rows(start, stop)
        return noise if self.means is None else saturate_noise(noise, self.segment_rows(start, stop), self.means)

    def saturated(self) -> "NativeNoise":
        """This noise with the per-segment channel means of the whole image (a pass over the strips)."""
        count = 2 + len(self.objects)
        sums, counts = np.zeros((count, 3)), np.zeros(count, np.int64)
        for start, stop in row_strips(self.box.height, self.box.width):
            strip_sums, strip_counts = segment_channel_sums(self.raw_rows(start, stop), self.segment_rows(start, stop),
                                                            count)
            sums, counts = sums + strip_sums, counts + strip_counts
        return replace(self, means=segment_channel_means(sums, counts))

    def full(self) -> np.ndarray:
        """``H x W x 3`` float32 noise of the whole image (12 bytes per pixel)."""
        return self.rows(0, self.box.height)


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
        epsilon: float = DEFAULT_EPSILON,
        epsilon_bg: float = DEFAULT_EPSILON_BG,
        batch_size: int = 4,
        saturate: bool = True,
    ) -> None:
        budget_levels(epsilon), budget_levels(epsilon_bg)  # range checks with a clear message
        if epsilon_bg > epsilon:
            raise ValueError(f"epsilon_bg ({epsilon_bg}) must not exceed epsilon ({epsilon})")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval()
        self.name = name
        self.trained = trained
        self.metadata = metadata or {}
        self.epsilon = epsilon
        self.epsilon_bg = epsilon_bg
        self.batch_size = batch_size
        self.saturate = saturate

    @classmethod
    def load(
        cls,
        path_or_preset: str | Path = "default",
        device: str | torch.device = "cpu",
        epsilon: float = DEFAULT_EPSILON,
        epsilon_bg: float = DEFAULT_EPSILON_BG,
        seed: int = 0,
        sam_checkpoint: str | Path | None = None,
        batch_size: int = 4,
        saturate: bool = True,
    ) -> "Protector":
        """A protector from the shipped weights ("default"), a preset name or a checkpoint path.

        "default" uses ``unseg/weights/default_generator.safetensors`` when it exists; otherwise,
        and for any preset name ("small", "vit_b"), the generator is randomly initialised from
        ``seed`` and ``trained`` is False (with a warning). ``sam_checkpoint`` loads official SAM
        weights into a preset's SAM part. Checkpoints saved with metadata ``trained: false``
        count as untrained. ``saturate`` (default) applies
        :func:`~unseg.protection.budget.saturate_noise` to the generator's noise; False keeps the
        raw generator output.
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
        return cls(generator, name=source, trained=trained, metadata=metadata, device=device,
                   epsilon=epsilon, epsilon_bg=epsilon_bg, batch_size=batch_size, saturate=saturate)

    @property
    def input_size(self) -> int:
        """Side of the square model input."""
        return self.generator.config.sam.img_size

    def describe(self) -> dict[str, Any]:
        """Generator and budget facts for a manifest."""
        return {"generator": self.name, "trained": self.trained, "saturate": self.saturate}

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
        loaded, squeeze = _as_loaded(image)
        prompt = ImagePrompt(mask=mask, boxes=box, points=points, point_labels=point_labels, objects=objects)
        result = self.protect_batch([loaded], [prompt])[0]
        if squeeze:
            result.pixels = result.pixels[..., 0]
        return result

    def protect_batch(self, images: list[LoadedImage], prompts: list[ImagePrompt]) -> list[ProtectionResult]:
        """Protect several images; prompts pair with images by position."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        for loaded, prompt in zip(images, prompts):
            prompt.check_fits(*loaded.size)
        if not images:
            return []
        boxes = [Letterbox(*loaded.size, size=self.input_size) for loaded in images]
        noise, logits, object_noise, background = self._forward(images, prompts, boxes)
        return [
            self._finish(loaded, prompt, box, noise[i : i + 1], logits[i : i + 1], object_noise[i],
                         None if background is None else background[i])
            for i, (loaded, prompt, box) in enumerate(zip(images, prompts, boxes))
        ]

    @torch.no_grad()
    def _forward(
        self, images: list[LoadedImage], prompts: list[ImagePrompt], boxes: list[Letterbox]
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor | None], torch.Tensor | None]:
        """Noise and mask logits over the model input for every image, per-object noise, and for a
        keyed generator the background noise (the same prompt, no code: the head's noise alone).

        Prompt tokens are padded only among images with the same number of tokens (one forward
        pass per distinct count): SAM's padding tokens take part in attention, so padding an
        image's prompt to the batch's longest one would make its noise depend on its neighbours
        in the batch. Grouping keeps each output independent of how images are batched.
        """
        inputs = torch.cat([image_to_model_input(box, loaded.pixels) for loaded, box in zip(images, boxes)])
        features = self.generator.encode(inputs.to(self.device))
        tokens = [_prompt_tokens(prompt, box) for prompt, box in zip(prompts, boxes)]
        masks = [_mask_input(prompt.mask, box) for prompt, box in zip(prompts, boxes)]
        noise: list[torch.Tensor | None] = [None] * len(images)
        logits: list[torch.Tensor | None] = [None] * len(images)
        background: list[torch.Tensor | None] = [None] * len(images)
        for count in sorted({len(labels) for _, labels in tokens}):
            group = [i for i, (_, labels) in enumerate(tokens) if len(labels) == count]
            batch = _prompt_batch([tokens[i] for i in group], [masks[i] for i in group], self.input_size).to(self.device)
            rows = features.select(torch.tensor(group, device=self.device))
            out = self.generator.decode(rows, batch, self._codes([prompts[i].key for i in group]))
            for row, index in enumerate(group):
                noise[index], logits[index] = out.noise[row].float().cpu(), out.mask_logits[row].float().cpu()
            if self.generator.config.keyed:
                uncoded = self.generator.decode(rows, batch).noise
                for row, index in enumerate(group):
                    background[index] = uncoded[row].float().cpu()
        backgrounds = torch.stack(background) if self.generator.config.keyed else None  # type: ignore[arg-type]
        return (torch.stack(noise), torch.stack(logits), self._object_noise(features, prompts, boxes),  # type: ignore[arg-type]
                backgrounds)

    def _object_noise(self, features: ImageFeatures, prompts: list[ImagePrompt],
                      boxes: list[Letterbox]) -> list[torch.Tensor | None]:
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
                found.setdefault(index, []).append(out.noise[row].float().cpu())
        return [torch.stack(found[i]) if i in found else None for i in range(len(prompts))]

    def _codes(self, keys: list[int]) -> torch.Tensor | None:
        """Code indices of object keys for a keyed generator (None for an unkeyed one)."""
        config = self.generator.config
        if not config.keyed:
            return None
        return torch.tensor([code_index(key, config.num_codes) for key in keys], dtype=torch.long, device=self.device)

    def _finish(
        self, loaded: LoadedImage, prompt: ImagePrompt, box: Letterbox, noise: torch.Tensor, logits: torch.Tensor,
        object_noise: torch.Tensor | None, background: torch.Tensor | None = None,
    ) -> ProtectionResult:
        """Noise to native size, saturation, budget and statistics, strip by strip (bounded memory)."""
        region = _region(prompt, box, logits)
        objects = [] if object_noise is None else list(zip(prompt.objects, object_noise.numpy()))
        native = NativeNoise(box, noise[0].numpy(), objects, region, None if background is None else background.numpy())
        if self.saturate:
            native = native.saturated()
        pixels = np.empty_like(loaded.pixels)
        for start, stop in row_strips(box.height, box.width):
            pixels[start:stop] = apply_budget(loaded.pixels[start:stop], native.rows(start, stop), region[start:stop],
                                              self.epsilon, self.epsilon_bg)
        inside, outside = measured_linf(loaded.pixels, pixels, region)
        max_value = int(np.iinfo(loaded.pixels.dtype).max)
        stats: dict[str, Any] = {
            "linf_inside": inside,
            "linf_outside": outside,
            "epsilon_levels": budget_levels(self.epsilon, max_value),
            "epsilon_bg_levels": budget_levels(self.epsilon_bg, max_value),
            **image_quality(loaded.pixels, pixels),
            "num_objects": _count_objects(prompt),
            "keyed": self.generator.config.keyed,
            "keying": prompt.keying,
            "keys": list(prompt.keys) if prompt.keys is not None else ([prompt.key] if prompt.kind != "none" else []),
            "prompt": prompt.kind,
            "num_boxes": prompt.num_boxes,
            "num_points": prompt.num_points,
            "region_fraction": float(region.mean()),
        }
        return ProtectionResult(pixels=pixels, alpha=loaded.alpha, region=region, stats=stats, native=native)


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


def _as_loaded(image: np.ndarray | Image.Image | str | Path) -> tuple[LoadedImage, bool]:
    """Any supported image input -> (LoadedImage, whether the input was a 2-D array)."""
    if isinstance(image, (str, Path)):
        return read_image(image), False
    if isinstance(image, Image.Image):
        return loaded_from_pil(ImageOps.exif_transpose(image)), False
    if isinstance(image, LoadedImage):
        return image, False
    array = np.asarray(image)
    if array.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"image array must be uint8 or uint16, got {array.dtype}")
    if array.ndim == 2:
        return LoadedImage(array[..., None]), True
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"image array must be H x W, H x W x 1, H x W x 3 or H x W x 4, got {array.shape}")
    if array.shape[2] == 4:
        return LoadedImage(array[..., :3].copy(), array[..., 3].copy()), False
    return LoadedImage(array), False


def _prompt_tokens(prompt: ImagePrompt, box: Letterbox) -> tuple[np.ndarray, np.ndarray]:
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


def _mask_input(mask: np.ndarray | None, box: Letterbox) -> torch.Tensor | None:
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


def _region(prompt: ImagePrompt, box: Letterbox, logits: torch.Tensor) -> np.ndarray:
    """Where ε applies: the mask; else the union of boxes; else the predicted mask plus point discs."""
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
            region[start:stop] = box.map_rows_to_image(logits[0].numpy(), start, stop)[..., 0] > 0
        radius = _point_disc_radius(height, width)
        for (x, y), label in zip(prompt.points, prompt.point_labels):
            if label == 1:
                rows, cols = disk((y, x), radius, shape=(height, width))
                region[rows, cols] = True
    return region


def _count_objects(prompt: ImagePrompt) -> int:
    """Objects the prompt names: the source's count, else 1 for a mask, one per box, else one per
    positive point; 0 for an empty prompt."""
    if prompt.kind == "none":
        return 0
    if prompt.num_objects is not None:
        return prompt.num_objects
    if prompt.mask is not None:
        return 1
    if prompt.boxes is not None:
        return prompt.num_boxes
    if prompt.points is not None:
        return int((prompt.point_labels == 1).sum())
    return 0
