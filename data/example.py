"""One training sample as a `tf.train.Example` (the proto tensorflow-datasets ships; no TensorFlow needed).

Features:
    frame        bytes    JPEG of the 256x256 RGB training frame (crop, masks and resize already applied)
    actions      float[H*A]  the action chunk that follows the frame, in the shard's action layout (model units)
    action_mask  float[H*A]  1 where the chunk step lies inside labelled data, 0 past its end or in a gap
    action_shape int64[2]    (H, A)
    video_id     bytes,  label_row int64 (row on the video's 60 fps label timeline),  frame_index int64 (video frame)

A TensorFlow user reads these with `tf.io.parse_single_example` and the same names.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from tensorflow_datasets.proto import tf_example_pb2


@dataclasses.dataclass
class Sample:
    jpeg: bytes
    actions: np.ndarray  # float32 [H, A]
    action_mask: np.ndarray  # float32 [H, A]
    video_id: str
    label_row: int
    frame_index: int


def encode_sample(s: Sample) -> bytes:
    ex = tf_example_pb2.Example()
    f = ex.features.feature
    f["frame"].bytes_list.value.append(s.jpeg)
    f["actions"].float_list.value.extend(np.asarray(s.actions, np.float32).ravel().tolist())
    f["action_mask"].float_list.value.extend(np.asarray(s.action_mask, np.float32).ravel().tolist())
    f["action_shape"].int64_list.value.extend(s.actions.shape)
    f["video_id"].bytes_list.value.append(s.video_id.encode())
    f["label_row"].int64_list.value.append(int(s.label_row))
    f["frame_index"].int64_list.value.append(int(s.frame_index))
    return ex.SerializeToString()


def decode_sample(data: bytes) -> Sample:
    """Serialized Example -> Sample; raises ValueError (naming the feature) if one is missing or misshaped."""
    ex = tf_example_pb2.Example.FromString(data)
    f = ex.features.feature
    for key in ("frame", "actions", "action_mask", "action_shape", "video_id", "label_row", "frame_index"):
        if key not in f:
            raise ValueError(f"example has no feature {key!r} (has {sorted(f)})")
    shape = tuple(f["action_shape"].int64_list.value)
    actions, mask = (_floats(f[k].float_list.value) for k in ("actions", "action_mask"))
    if len(shape) != 2 or actions.size != np.prod(shape) or mask.size != actions.size:
        raise ValueError(
            f"example action_shape {shape} does not match {actions.size} actions / {mask.size} mask values"
        )
    return Sample(
        jpeg=f["frame"].bytes_list.value[0],
        actions=actions.reshape(shape),
        action_mask=mask.reshape(shape),
        video_id=f["video_id"].bytes_list.value[0].decode(),
        label_row=f["label_row"].int64_list.value[0],
        frame_index=f["frame_index"].int64_list.value[0],
    )


def _floats(values) -> np.ndarray:
    return np.fromiter(values, np.float32, len(values))  # about twice as fast as np.asarray on a repeated field
