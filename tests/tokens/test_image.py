"""Image tokenizer: taming-compatible keys, preprocessing, checkpoint round trip, per-item decode errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from mm_assets.storage.paths import sha256_file
from mm_assets.tokens.config import ImageTokenizerConfig
from mm_assets.tokens.identity import InvalidWeightsError, MissingWeightsError
from mm_assets.tokens.vq import MediaDecodeError, NoFramesError, decode_image, ffmpeg_exe
from mm_assets.tokens.vqgan import ImageTokenizer, VQGANArch

SMALL = VQGANArch(embed_dim=8, n_embed=512, z_channels=8, ch=32, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=1)


def small_config(**kw) -> ImageTokenizerConfig:
    return ImageTokenizerConfig(**{"checkpoint": None, "device": "cpu", "codebook_size": 512, "embed_dim": 8,
                                   "batch_size": 2, **kw})


def small_tokenizer(seed: int = 0, **kw) -> ImageTokenizer:
    return ImageTokenizer.from_config(small_config(**kw), allow_random_weights=True, arch=SMALL, seed=seed)


def taming_encoder_shapes(ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(16,),
                          resolution=256, in_channels=3, z_channels=256, embed_dim=256, n_embed=16384):
    """The keys and shapes of taming's VQModel minus decoder/loss, spelled out from its naming rules."""
    keys = {}

    def conv(name, c_out, c_in, k):
        keys[f"{name}.weight"], keys[f"{name}.bias"] = (c_out, c_in, k, k), (c_out,)

    def norm(name, c):
        keys[f"{name}.weight"], keys[f"{name}.bias"] = (c,), (c,)

    def resnet(name, c_in, c_out):
        norm(f"{name}.norm1", c_in), conv(f"{name}.conv1", c_out, c_in, 3)
        norm(f"{name}.norm2", c_out), conv(f"{name}.conv2", c_out, c_out, 3)
        if c_in != c_out:
            conv(f"{name}.nin_shortcut", c_out, c_in, 1)

    def attn(name, c):
        norm(f"{name}.norm", c)
        for part in ("q", "k", "v", "proj_out"):
            conv(f"{name}.{part}", c, c, 1)

    conv("encoder.conv_in", ch, in_channels, 3)
    widths = [ch * m for m in (1, *ch_mult)]
    res = resolution
    for i in range(len(ch_mult)):
        c_in, c_out = widths[i], widths[i + 1]
        for j in range(num_res_blocks):
            resnet(f"encoder.down.{i}.block.{j}", c_in if j == 0 else c_out, c_out)
            if res in attn_resolutions:
                attn(f"encoder.down.{i}.attn.{j}", c_out)
        if i < len(ch_mult) - 1:
            conv(f"encoder.down.{i}.downsample.conv", c_out, c_out, 3)
            res //= 2
    c = widths[-1]
    resnet("encoder.mid.block_1", c, c), attn("encoder.mid.attn_1", c), resnet("encoder.mid.block_2", c, c)
    norm("encoder.norm_out", c), conv("encoder.conv_out", z_channels, c, 3)
    conv("quant_conv", embed_dim, z_channels, 1)
    keys["quantize.embedding.weight"] = (n_embed, embed_dim)
    return keys


@pytest.fixture(scope="module")
def real_tokenizer():
    config = ImageTokenizerConfig(checkpoint=None, device="cpu")  # vqgan_imagenet_f16_16384's shape
    return ImageTokenizer.from_config(config, allow_random_weights=True)


@pytest.fixture(scope="module")
def small():
    return small_tokenizer()


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    chans = [np.sin(xx * rng.uniform(3, 12) + yy * rng.uniform(3, 12) + rng.uniform(0, 6)) for _ in range(3)]
    return ((np.stack(chans, -1) + 1) * 127.5).astype(np.uint8)


def write_png(image: np.ndarray, path: Path) -> Path:
    h, w, _ = image.shape
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
                    "-i", "pipe:0", "-frames:v", "1", str(path)], input=image.tobytes(), check=True)
    return path


def test_real_config_state_dict_matches_taming_keys_and_shapes(real_tokenizer):
    got = {k: tuple(v.shape) for k, v in real_tokenizer.model.state_dict().items()}
    assert got == taming_encoder_shapes()
    assert len(got) == 147
    assert got["encoder.down.2.block.0.nin_shortcut.weight"] == (256, 128, 1, 1)
    assert got["encoder.down.4.attn.1.proj_out.weight"] == (512, 512, 1, 1)
    assert got["encoder.conv_out.weight"] == (256, 512, 3, 3)
    assert "encoder.down.4.downsample.conv.weight" not in got and "encoder.down.3.attn.0.q.weight" not in got


def test_real_config_256_image_gives_256_codes_in_range(real_tokenizer):
    codes = real_tokenizer.encode_images(smooth_image(256, 256)[None])
    assert codes.shape == (1, 256) and codes.dtype == np.int32
    assert codes.min() >= 0 and codes.max() < 16384
    assert real_tokenizer.identity.is_random and real_tokenizer.codes_per_image == 256
    meta = real_tokenizer.identity.to_metadata()
    assert meta["weights"] == "random" and meta["config"]["arch"]["n_embed"] == 16384 and meta["versions"]["ffmpeg"]


def test_quantizer_is_nearest_codebook_entry(small):
    z = torch.randn(2, SMALL.embed_dim, 4, 4)
    e = small.model.quantize.embedding.weight
    flat = z.permute(0, 2, 3, 1).reshape(-1, SMALL.embed_dim)
    assert torch.equal(small.model.quantize(z).reshape(-1), torch.cdist(flat, e).argmin(1))


def test_non_square_image_is_resized_and_center_cropped(small):
    x = small.preprocess([smooth_image(200, 300), smooth_image(512, 300)])
    assert x.shape == (2, 3, 256, 256) and x.min() >= -1 and x.max() <= 1
    # Shorter side already 256: only the centre crop applies.
    wide = smooth_image(256, 384, seed=3)
    assert torch.allclose(small.preprocess(wide[None]), small.preprocess(wide[None, :, 64:320]))
    codes = small.encode_images([smooth_image(200, 300), np.full((300, 200, 3), 90, np.uint8)])
    flat = small.encode_images(np.full((1, 256, 256, 3), 90, np.uint8))
    assert codes.shape == (2, 256) and codes.max() < SMALL.n_embed
    assert np.array_equal(codes[1], flat[0])


def test_other_input_resolution_keeps_the_taming_module_tree():
    tok = small_tokenizer(resolution=128)
    assert tok.model.state_dict().keys() == small_tokenizer().model.state_dict().keys()
    codes = tok.encode_images([smooth_image(150, 100)])
    assert codes.shape == (1, 64) == (1, tok.codes_per_image) and codes.max() < SMALL.n_embed


def test_float_input_matches_uint8_and_bad_input_is_refused(small):
    img = smooth_image(256, 256, seed=1)
    assert np.array_equal(small.encode_images(img[None]), small.encode_images(img[None].astype(np.float32) / 255))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        small.encode_images(img[None].astype(np.float32))
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        small.encode_images(img)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        small.encode_images(img[None, ..., :2])


def test_lightning_checkpoint_round_trip_drops_decoder_and_loss(tmp_path, small):
    source = small_tokenizer(seed=7)
    state = dict(source.model.state_dict())
    state["decoder.conv_in.weight"] = torch.randn(32, 8, 3, 3)
    state["post_quant_conv.weight"] = torch.randn(8, 8, 1, 1)
    state["loss.discriminator.main.0.weight"] = torch.randn(64, 3, 4, 4)
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": state, "epoch": 3, "global_step": 120, "pytorch-lightning_version": "1.0.8"}, ckpt)

    loaded = ImageTokenizer.from_config(small_config(checkpoint=str(ckpt)), arch=SMALL, seed=0)
    images = np.stack([smooth_image(256, 256, seed=s) for s in (4, 5)])
    assert np.array_equal(loaded.encode_images(images), source.encode_images(images))
    assert not np.array_equal(small.encode_images(images), source.encode_images(images))  # weights mattered
    assert loaded.dropped_keys == ["decoder.conv_in.weight", "loss.discriminator.main.0.weight",
                                   "post_quant_conv.weight"]
    assert loaded.identity.weights == "pretrained" and loaded.identity.weights_sha256 == sha256_file(ckpt)
    assert "random_seed" not in loaded.identity.config and source.identity.config["random_seed"] == 7


def test_checkpoint_missing_encoder_key_or_wrong_shape_fails_clearly(tmp_path):
    state = dict(small_tokenizer().model.state_dict())
    torch.save(state, tmp_path / "plain.pt")  # a plain state_dict loads too
    del state["encoder.mid.attn_1.q.weight"]
    torch.save({"state_dict": state}, tmp_path / "missing.ckpt")
    with pytest.raises(InvalidWeightsError, match=r"missing keys encoder\.mid\.attn_1\.q\.weight"):
        ImageTokenizer.from_config(small_config(checkpoint="missing.ckpt"), base_dir=tmp_path, arch=SMALL)
    wide = VQGANArch(embed_dim=8, n_embed=16384, z_channels=8, ch=32, num_res_blocks=1)
    with pytest.raises(InvalidWeightsError, match=r"quantize\.embedding\.weight \(checkpoint \(512, 8\) vs model "
                                                  r"\(16384, 8\)"):
        ImageTokenizer.from_config(small_config(checkpoint="plain.pt", codebook_size=16384), base_dir=tmp_path,
                                   arch=wide)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidWeightsError, match="junk.ckpt"):
        ImageTokenizer.from_config(small_config(checkpoint="junk.ckpt"), base_dir=tmp_path, arch=SMALL)
    with pytest.raises(MissingWeightsError, match=r"nope\.ckpt does not exist.*tokenizers\.image\.checkpoint"):
        ImageTokenizer.from_config(small_config(checkpoint="nope.ckpt"), base_dir=tmp_path, arch=SMALL)
    with pytest.raises(ValueError, match="disagrees with tokenizers.image"):
        ImageTokenizer.from_config(small_config(codebook_size=1024), allow_random_weights=True, arch=SMALL)
    with pytest.raises(ValueError, match="patch_size 8"):
        ImageTokenizer.from_config(ImageTokenizerConfig(patch_size=8), allow_random_weights=True)


def test_encode_file_matches_the_decoded_array(tmp_path, small):
    img = smooth_image(180, 240, seed=2)
    path = write_png(img, tmp_path / "frame.png")
    assert np.array_equal(decode_image(path), img)
    assert np.array_equal(small.encode_file(path), small.encode_images(img[None])[0])


def test_corrupt_image_is_a_per_item_error_naming_the_file(tmp_path, small):
    good = write_png(smooth_image(64, 96), tmp_path / "good.png")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" + bytes(range(256)) * 4)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    paths = [bad, good, empty, tmp_path / "gone.png", good]
    results = dict(zip([p.name for p in paths], small.encode_files(paths)))
    assert results["good.png"].shape == (256,)
    assert np.array_equal(results["good.png"], small.encode_file(good))
    with pytest.raises(MediaDecodeError, match="bad.jpg"):
        small.encode_file(bad)
    assert isinstance(results["bad.jpg"], MediaDecodeError) and results["bad.jpg"].reason == "corrupt_media"
    assert str(bad) in str(results["bad.jpg"])
    assert isinstance(results["empty.png"], NoFramesError) and "empty" in str(results["empty.png"])
    assert results["gone.png"].reason == "missing_file" and "no such file" in str(results["gone.png"])


def test_codes_are_deterministic_for_a_seed():
    img = smooth_image(256, 256, seed=9)[None]
    a, b = small_tokenizer(seed=11), small_tokenizer(seed=11, batch_size=1)
    before = torch.get_rng_state()
    c = small_tokenizer(seed=12)
    assert torch.equal(before, torch.get_rng_state())  # seeding does not disturb the caller's RNG
    assert np.array_equal(a.encode_images(img), b.encode_images(img))
    assert np.array_equal(a.encode_images(img), a.encode_images(img))
    assert not torch.equal(a.model.quantize.embedding.weight, c.model.quantize.embedding.weight)
