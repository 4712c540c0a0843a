"""Mechanics of the SAM-layout networks: shapes, prompts, presets, checkpoints."""

import pytest
import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from unseg.models import (
    CheckpointError,
    GeneratorConfig,
    PromptBatch,
    build_generator,
    build_surrogate,
    load_model,
    load_sam_weights,
    read_metadata,
    save_model,
)
from unseg.models.prompts import embed_prompts



def _prompts(batch: int, size: int) -> PromptBatch:
    coords = torch.tensor([[[4.0, 4.0], [40.0, 50.0], [20.0, 20.0]]]).expand(batch, -1, -1) * size / 64
    labels = torch.tensor([[2, 3, 1]]).expand(batch, -1)
    return PromptBatch(coords=coords, labels=labels)


@pytest.mark.parametrize(("upscale", "side"), [(1, 64), (0, 32), (-1, 16)])
def test_generator_noise_is_unit_bounded_with_expected_shape(upscale, side, tiny_sam):
    torch.manual_seed(0)
    generator = build_generator(GeneratorConfig(sam=tiny_sam, noise_upscale=upscale))
    out = generator(torch.rand(2, 3, 64, 64), _prompts(2, 64))
    assert generator.config.noise_size == side
    assert out.noise.shape == (2, 3, side, side)  # embedding 8 -> mask 32 -> 2x stage / none / 2x pool
    assert out.mask_logits.shape == (2, 1, 32, 32)
    assert out.noise.abs().max() <= 1.0


def test_highpass_noise_cannot_be_a_flat_colour_shift(tiny_sam):
    """With ``noise_highpass`` the noise ignores any constant added to its pre-activation map (so a
    region-wide colour shift is not expressible); without it, it does not."""
    shifted = torch.randn(1, 3, 32, 32)
    constant = torch.tensor([2.0, -1.0, 0.5]).view(1, 3, 1, 1)
    with_highpass = build_generator(GeneratorConfig(sam=tiny_sam, noise_upscale=0, noise_highpass=0.25))
    assert with_highpass.config.highpass_window == 9 and with_highpass.noise_head.highpass_window == 9
    head = with_highpass.noise_head
    assert torch.allclose(head.highpass(shifted + constant), head.highpass(shifted), atol=1e-5)
    plain = build_generator(GeneratorConfig(sam=tiny_sam, noise_upscale=0)).noise_head
    assert plain.highpass_window == 0
    assert not torch.allclose(plain.highpass(shifted + constant), plain.highpass(shifted), atol=1e-2)
    out = with_highpass(torch.rand(2, 3, 64, 64), _prompts(2, 64))
    assert out.noise.shape == (2, 3, 32, 32) and out.noise.abs().max() <= 1.0


def test_prompt_types_change_the_noise_and_mix_in_one_batch(tiny_sam):
    torch.manual_seed(0)
    generator = build_generator(GeneratorConfig(sam=tiny_sam)).eval()
    images = torch.rand(1, 3, 64, 64).expand(3, -1, -1, -1)
    masks = torch.zeros(3, 1, 64, 64)
    masks[0, :, 10:30, 10:30] = 1
    prompts = PromptBatch(
        coords=torch.tensor([[[0.0, 0.0], [0.0, 0.0]], [[5.0, 5.0], [30.0, 30.0]], [[12.0, 12.0], [0.0, 0.0]]]),
        labels=torch.tensor([[-1, -1], [2, 3], [1, -1]]),
        masks=masks,
        has_mask=torch.tensor([True, False, False]),
    )
    with torch.no_grad():
        noise = generator(images, prompts).noise
    assert not torch.allclose(noise[0], noise[1]) and not torch.allclose(noise[1], noise[2])


def test_padding_tokens_equal_sam_not_a_point(tiny_sam):
    torch.manual_seed(0)
    generator = build_generator(GeneratorConfig(sam=tiny_sam))
    encoder = generator.prompt_encoder
    coords = torch.tensor([[[3.0, 4.0], [10.0, 12.0]]])
    labels = torch.tensor([[1, 0]])
    ours, _ = embed_prompts(encoder, PromptBatch(coords=coords, labels=labels))
    theirs, _ = encoder(points=(coords, labels), boxes=None, masks=None)
    assert torch.allclose(ours, theirs, atol=1e-6)
    box = torch.tensor([[2.0, 3.0, 30.0, 40.0]])
    ours, _ = embed_prompts(encoder, PromptBatch(coords=box.view(1, 2, 2), labels=torch.tensor([[2, 3]])))
    theirs, _ = encoder(points=None, boxes=box, masks=None)
    assert torch.allclose(ours[:, :2], theirs, atol=1e-6)


def test_surrogate_single_mask_without_iou_head():
    surrogate = build_surrogate("small")
    assert not hasattr(surrogate.mask_decoder, "iou_prediction_head")
    logits = surrogate(torch.rand(2, 3, 128, 128), _prompts(2, 128))
    assert logits.shape == (2, 1, 64, 64)


def test_checkpoint_round_trip_and_errors(tmp_path, tiny_sam):
    torch.manual_seed(0)
    generator = build_generator(GeneratorConfig(sam=tiny_sam))
    path = save_model(tmp_path / "g.safetensors", generator, {"epsilon_train": 1 / 255})
    loaded, meta = load_model(path, kind="generator")
    assert meta["epsilon_train"] == pytest.approx(1 / 255)
    assert read_metadata(path)["unseg_config"]["sam"]["img_size"] == 64
    for name, tensor in generator.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name])
    with pytest.raises(CheckpointError, match="holds a generator"):
        load_model(path, kind="surrogate")
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_model(tmp_path / "bad.safetensors")


def test_official_sam_state_dict_loads_into_generator_and_freezes(tmp_path, tiny_sam):
    """A state dict in segment_anything's own layout (same shapes) loads key for key."""
    torch.manual_seed(1)
    sam = Sam(
        image_encoder=ImageEncoderViT(img_size=64, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                                      out_chans=32, use_rel_pos=True, global_attn_indexes=(1,), window_size=4,
                                      norm_layer=lambda d: torch.nn.LayerNorm(d, eps=1e-6)),
        prompt_encoder=PromptEncoder(embed_dim=32, image_embedding_size=(8, 8), input_image_size=(64, 64),
                                     mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer_dim=32,
                                 transformer=TwoWayTransformer(depth=2, embedding_dim=32, mlp_dim=64, num_heads=2)),
    )
    torch.save(sam.state_dict(), tmp_path / "sam.pth")
    generator = build_generator(GeneratorConfig(sam=tiny_sam))
    missing = load_sam_weights(generator, tmp_path / "sam.pth")
    assert missing == []
    assert torch.equal(generator.image_encoder.blocks[0].attn.qkv.weight, sam.image_encoder.blocks[0].attn.qkv.weight)
    assert all(not p.requires_grad for p in generator.sam_parameters())
    assert generator.noise_tokens.weight.requires_grad
    wrong = build_generator("small")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_sam_weights(wrong, tmp_path / "sam.pth")


@pytest.mark.parametrize("name", ["unet", "segformer"])
def test_semantic_victims_build_and_learn(name):
    """Every semantic victim architecture (CNNs and the SegFormer transformer) takes [0, 1] images
    at a victim size (multiples of 32) and returns per-class logits of the same size, and a few Adam
    steps at the victims' learning rate fit a fixed batch (labels = which third of the width)."""
    from unseg.evaluation.training import TrainSchedule
    from unseg.evaluation.victims import build_victim, parse_victim

    torch.manual_seed(0)
    model = build_victim(parse_victim(name), num_classes=3)
    images = torch.rand(2, 3, 64, 96)
    labels = (torch.arange(96) // 32).expand(2, 64, 96)
    optimizer = torch.optim.Adam(model.parameters(), lr=TrainSchedule.lr)
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert model(images).shape == (2, 3, 64, 96)
    assert losses[-1] < 0.8 * losses[0]
