"""nitrogen_jax.data: the public label layout, preprocessing to TFRecord shards (Apache Beam), the Grain loader.

Modules: layout (read/write labels), preprocess + pipeline (videos + labels -> shards + manifest), tfrecord and
example (file format), loader + augment + device (training input), sample_data (a small real Atari dataset).
"""
