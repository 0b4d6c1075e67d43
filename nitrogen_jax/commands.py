"""Model commands: `convert` (release checkpoint / SigLIP tower -> Policy directory) and `sample`, and the policy
flags (`PolicySource`) that every command running a policy shares."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
import tyro

if TYPE_CHECKING:
    from nitrogen_jax.policy import Policy

DEFAULT_FRAME = Path(__file__).parent / "assets" / "frame.png"
ComputeDtype = Literal["float32", "bfloat16"]


@dataclasses.dataclass(frozen=True)
class PolicySource:
    """Which policy a command runs: a saved Policy directory, or random weights of a preset (smoke tests)."""

    policy: Path | None = None
    """A Policy directory (from `convert` or training); when given, --preset is ignored."""
    preset: str = "tiny"
    """Random weights of this preset (tiny, seed, nitrogen-500m) when no --policy is given."""
    compute_dtype: ComputeDtype | None = None
    """Compute precision; default: the policy's config."""
    seed: int = 0
    """Seed of the random weights and of the sampling noise."""

    def load(self) -> tuple[Policy, str]:
        """(policy, where it came from: the resolved directory, or `nitrogen-jax-preset-NAME` for random weights,
        a name that is also safe as a folder name, as the release's client uses it)."""
        from nitrogen_jax.policy import Policy

        overrides = {"compute_dtype": self.compute_dtype} if self.compute_dtype else {}
        if self.policy is not None:
            return Policy.load(self.policy, **overrides), str(self.policy.resolve())
        return Policy.init(self.preset, seed=self.seed, **overrides), f"nitrogen-jax-preset-{self.preset}"


@dataclasses.dataclass(frozen=True)
class SampleArgs:
    """Sample one action chunk from a frame and print it, frame by frame."""

    source: Annotated[PolicySource, tyro.conf.arg(name="")] = PolicySource()
    image: Path = DEFAULT_FRAME
    """An RGB image file (default: a bundled Atari frame)."""
    euler_steps: int | None = None
    """Euler steps of the sampler (default: the config's num_steps)."""

    def run(self) -> int:
        import jax

        from nitrogen_jax.frames import read_frame

        policy, source = self.source.load()
        frame = read_frame(self.image, policy.config.vision.image_size)
        print(f"{policy} from {source}\nframe: {self.image}")
        rng = jax.random.key(self.source.seed)
        t0 = time.perf_counter()
        chunk = np.asarray(policy.sample(frame[None], rng=rng, num_steps=self.euler_steps))[0]
        t1 = time.perf_counter()
        np.asarray(policy.sample(frame[None], rng=rng, num_steps=self.euler_steps))
        t2 = time.perf_counter()
        print(
            f"first call (compile + run) {t1 - t0:.2f} s, second call {1e3 * (t2 - t1):.1f} ms "
            f"on {jax.devices()[0].platform}"
        )
        print(format_chunk(chunk, policy.config.layout))
        return 0


@dataclasses.dataclass(frozen=True)
class ConvertArgs:
    """Import the release's ng.pt (read without running its code), or start a preset from a SigLIP tower."""

    checkpoint: tyro.conf.Positional[Path]
    """The release checkpoint file (a torch pickle), or a transformers SigLIP save_pretrained directory."""
    out: tyro.conf.Positional[Path]
    """Output directory (Policy.save layout: params/ + config.json)."""
    vision_heads: int | None = None
    """Override the vision tower's head count (not visible in tensor shapes)."""
    context_len: int | None = None
    """Override the tokenizer's max sequence length (image tokens are left-padded to it)."""
    compute_dtype: ComputeDtype = "float32"
    preset: str = "nitrogen-500m"
    """With a SigLIP directory: the policy to initialise around the tower."""
    seed: int = 0
    """With a SigLIP directory: seed of the non-vision weights."""

    def run(self) -> int:
        from nitrogen_jax.convert.release import load_release_checkpoint
        from nitrogen_jax.policy import Policy

        if self.checkpoint.is_dir():
            policy = Policy.from_siglip(self.preset, self.checkpoint, seed=self.seed, compute_dtype=self.compute_dtype)
            print(f"{policy} with the vision tower of {self.checkpoint}\nwrote {policy.save(self.out)}")
            return 0
        config, params, report = load_release_checkpoint(
            self.checkpoint,
            vision_heads=self.vision_heads,
            context_len=self.context_len,
            compute_dtype=self.compute_dtype,
        )
        out = Policy(config, params).save(self.out)
        print(report.summary())
        print(f"wrote {out}")
        return 0


def format_chunk(chunk: np.ndarray, layout) -> str:
    """A [H, A] chunk in model units as a table: pressed buttons and stick positions per frame."""
    pad = layout.decode(chunk)
    lines = [f"{'frame':>5}  {'left stick (x, y)':>18}  {'right stick (x, y)':>18}  buttons"]
    for i in range(len(pad)):
        lx, ly = pad.j_left[i]
        rx, ry = pad.j_right[i]
        buttons = " ".join(b.upper() for b in pad.pressed(i)) or "-"
        lines.append(f"{i:>5}  {lx:+8.3f}, {ly:+8.3f}  {rx:+8.3f}, {ry:+8.3f}  {buttons}")
    return "\n".join(lines)
