"""Weight import against real references: transformers' SiglipVisionModel and a release-format checkpoint."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, cast

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from transformers import SiglipVisionConfig, SiglipVisionModel  # noqa: E402

from nitrogen_jax import Policy  # noqa: E402
from nitrogen_jax.cli import main as cli_main  # noqa: E402
from nitrogen_jax.config import get_config  # noqa: E402
from nitrogen_jax.convert.keymap import KeyMismatchError  # noqa: E402
from nitrogen_jax.convert.siglip import load_siglip_vision  # noqa: E402
from nitrogen_jax.vision import SiglipVisionTower  # noqa: E402
from tests.torch_reference import ReleaseReference  # noqa: E402

if TYPE_CHECKING:
    from torch import nn

WIDTH, HEADS = 32, 2
# Head counts are invisible in tensor shapes; the release names its SigLIP variant, a tiny test tower cannot.
OPTIONS = {"vision_heads": HEADS}


def rel_err(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


def randomize_(module: nn.Module, seed: int) -> None:
    """Random values everywhere (LayerNorm scales included), so no parameter is checked only at its init value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            base = 1.0 if name.endswith("norm1.weight") or "layer_norm" in name or "layernorm" in name else 0.0
            p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))


def siglip_config(**kw) -> SiglipVisionConfig:
    return SiglipVisionConfig(
        hidden_size=WIDTH,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        image_size=256,
        patch_size=16,
        **kw,
    )


def test_vision_tower_matches_transformers_siglip(tmp_path):
    hf = SiglipVisionModel(siglip_config()).eval()
    randomize_(hf, 0)
    hf.save_pretrained(tmp_path)
    config, params = load_siglip_vision(tmp_path)
    assert (config.width, config.depth, config.num_heads, config.mlp_dim) == (WIDTH, 2, HEADS, 64)
    pixels = np.random.default_rng(0).uniform(-1, 1, (2, 256, 256, 3)).astype(np.float32)
    ours = cast(jax.Array, SiglipVisionTower(config).apply({"params": params}, pixels))
    with torch.no_grad():
        ref = hf(pixel_values=torch.from_numpy(pixels).permute(0, 3, 1, 2)).last_hidden_state.numpy()
    assert ours.shape == ref.shape == (2, 256, WIDTH)
    assert rel_err(ours, ref) <= 1e-5


@pytest.mark.slow
def test_siglip_weights_start_a_policy(tmp_path):
    hf = SiglipVisionModel(siglip_config()).eval()
    randomize_(hf, 1)
    hf.save_pretrained(tmp_path)
    policy = Policy.from_siglip("tiny", tmp_path)
    np.testing.assert_array_equal(
        policy.params["vision"]["patch_embed"]["bias"], hf.embeddings.patch_embedding.bias.detach().numpy()
    )
    assert cli_main(["convert", str(tmp_path), str(tmp_path / "policy"), "--preset", "tiny"]) == 0
    jax.tree.map(
        np.testing.assert_array_equal, Policy.load(tmp_path / "policy").params["vision"], policy.params["vision"]
    )
    with pytest.raises(ValueError, match="expects"):
        Policy.from_siglip("tiny", tmp_path, vision=siglip_like(depth=3))


def siglip_like(**changes):
    return dataclasses.replace(get_config("tiny").vision, **changes)


CONTEXT_LEN = 260  # 256 image tokens left-padded with 4 zero vectors, as the release does for longer tokenizers


def make_reference(seed: int = 0) -> ReleaseReference:
    torch.manual_seed(seed)
    ref = ReleaseReference(
        siglip_config(),
        heads=HEADS,
        head_dim=16,
        mixer_layers=2,
        dit_layers=3,
        action_dim=25,
        max_seq_len=32,
        context_len=CONTEXT_LEN,
    ).eval()
    randomize_(ref, seed)
    return ref


CKPT_CONFIG: dict[str, Any] = {
    "experiment_name": "tiny-test",
    "model_cfg": {
        "hidden_size": 32,
        "action_dim": 25,
        "action_horizon": 18,
        "noise_beta_alpha": 1.6,
        "noise_beta_beta": 0.8,
        "noise_s": 0.999,
        "num_timestep_buckets": 1000,
        "num_inference_timesteps": 4,
        "add_pos_embed": True,
        "max_seq_len": 32,
        "vision_encoder_name": "tiny-siglip",
        "vision_hidden_size": 32,
        "diffusion_model_cfg": {
            "num_layers": 3,
            "num_attention_heads": 2,
            "attention_head_dim": 16,
            "dropout": 0.2,
            "norm_type": "ada_norm",
            "interleave_self_attention": True,
            "final_dropout": True,
        },
        "vl_self_attention_cfg": {"num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 16, "dropout": 0.2},
    },
    "tokenizer_cfg": {"max_sequence_length": CONTEXT_LEN},
    "modality_cfg": {"frame_per_sample": 1, "action_per_chunk": 18, "action_shift": 3},
}


@pytest.fixture(scope="module")
def release_ckpt(tmp_path_factory):
    ref = make_reference()
    path = tmp_path_factory.mktemp("release") / "ng.pt"
    torch.save({"model": ref.state_dict(), "step": 7, "epoch": 1, "ckpt_config": CKPT_CONFIG}, path)
    return ref, path


def inputs(seed=0, batch=2):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8)
    actions = rng.normal(size=(batch, 18, 25)).astype(np.float32)
    t = np.array([0.77, 0.125][:batch], np.float32)
    return frames, actions, t


def test_release_checkpoint_matches_reference(release_ckpt):
    ref, path = release_ckpt
    policy = Policy.from_release_checkpoint(path, **OPTIONS)
    c = policy.config
    assert (c.vision.depth, c.mixer.num_layers, c.dit.num_layers, c.context_len, c.num_steps) == (
        2,
        2,
        3,
        CONTEXT_LEN,
        4,
    )
    assert c.dit.dropout == 0.2 and c.dit.final_dropout and c.action_layout == "release"
    frames, actions, t = inputs()
    buckets = np.floor(t * np.float32(1000)).astype(np.int64)
    with torch.no_grad():
        want = ref.velocity(
            ref.encode(torch.from_numpy(frames)), torch.from_numpy(actions), torch.from_numpy(buckets)
        ).numpy()
    assert rel_err(policy.velocity(frames, actions, t), want) <= 1e-5
    noise = np.random.default_rng(1).normal(size=(2, 18, 25)).astype(np.float32)
    with torch.no_grad():
        want = ref.sample(torch.from_numpy(frames), torch.from_numpy(noise), num_steps=4).numpy()
    assert rel_err(policy.sample(frames, noise=noise), want) <= 1e-5


def test_converted_policy_saves_and_reloads_identically(release_ckpt, tmp_path):
    _, path = release_ckpt
    assert cli_main(["convert", str(path), str(tmp_path / "policy"), "--vision-heads", str(HEADS)]) == 0
    direct = Policy.from_release_checkpoint(path, **OPTIONS)
    loaded = Policy.load(tmp_path / "policy")
    assert loaded.config == direct.config
    frames, _, _ = inputs()
    noise = np.random.default_rng(2).normal(size=(2, 18, 25)).astype(np.float32)
    np.testing.assert_array_equal(
        np.asarray(loaded.sample(frames, noise=noise)), np.asarray(direct.sample(frames, noise=noise))
    )
    loaded.save(tmp_path / "again")
    again = Policy.load(tmp_path / "again")
    jax.tree.map(np.testing.assert_array_equal, again.params, loaded.params)


def test_report_names_dropped_pooling_head(release_ckpt):
    from nitrogen_jax.convert.release import load_release_checkpoint

    _, path = release_ckpt
    _, _, report = load_release_checkpoint(path, **OPTIONS)
    assert report.dropped and all(".head." in k for k in report.dropped)
    assert report.mapped + len(report.dropped) == report.num_tensors
    assert "vision_encoder.head.*" in report.summary()


def test_mismatched_checkpoint_lists_every_bad_key(release_ckpt, tmp_path):
    ref, _ = release_ckpt
    sd = dict(ref.state_dict())
    del sd["model.proj_out_1.bias"]
    sd["vl_self_attention_model.transformer_blocks.1.ff.net.2.weight"] = torch.zeros(32, 100)
    sd["model.extra_layer.weight"] = torch.zeros(3)
    path = tmp_path / "bad.pt"
    torch.save({"model": sd, "ckpt_config": CKPT_CONFIG}, path)
    with pytest.raises(KeyMismatchError) as e:
        Policy.from_release_checkpoint(path, **OPTIONS)
    msg = str(e.value)
    assert "1 missing keys" in msg and "model.proj_out_1.bias" in msg
    assert "1 mis-shaped keys" in msg and "transformer_blocks.1.ff.net.2.weight: (32, 100)" in msg
    assert "1 unexpected keys" in msg and "model.extra_layer.weight" in msg


class RunsCodeWhenUnpickled:
    """A config object whose unpickling would create a file: the converter must read past it without running it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class OmegaLikeConfig:
    """A config container that keeps its data in `_content`, as OmegaConf's DictConfig does."""

    def __init__(self, content):
        self._content = content


def test_config_objects_are_read_as_inert_data(release_ckpt, tmp_path):
    from nitrogen_jax.convert.release import load_release_checkpoint

    ref, _ = release_ckpt
    path = tmp_path / "objects.pt"
    torch.save(
        {
            "model": ref.state_dict(),
            "ckpt_config": dict(CKPT_CONFIG, model_cfg=OmegaLikeConfig(CKPT_CONFIG["model_cfg"])),
        },
        path,
    )
    config, _, report = load_release_checkpoint(path, **OPTIONS)
    assert config.num_steps == 4 and config.dit.num_layers == 3  # read through the inert stand-in
    assert report.stand_ins == [f"{__name__}.OmegaLikeConfig"]


def test_checkpoint_that_would_run_code_is_refused_and_runs_nothing(release_ckpt, tmp_path):
    ref, _ = release_ckpt
    marker = tmp_path / "pwned"
    path = tmp_path / "hostile.pt"
    torch.save({"model": ref.state_dict(), "ckpt_config": dict(CKPT_CONFIG, hook=RunsCodeWhenUnpickled(marker))}, path)
    with pytest.raises(ValueError, match="refusing.*system"):
        Policy.from_release_checkpoint(path, **OPTIONS)
    assert not marker.exists()


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "ng.pt"
    bad.write_bytes(b"definitely not a zip")
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        Policy.from_release_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Policy.from_release_checkpoint(tmp_path / "missing.pt")
