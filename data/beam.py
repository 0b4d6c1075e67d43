"""Apache Beam, imported without its import-time noise: `from nitrogen_jax.data.beam import beam, FileSystems`.

Without the GCP client libraries (needed only for Dataflow and BigQuery), Beam logs "apitools not found ..."
through the root logger on import, and a warning on a root logger without handlers also installs a stderr handler
for the whole process. The import runs with a silent root handler instead; nothing else changes.
"""

import logging

_root = logging.getLogger()
_silent, _level = logging.NullHandler(), _root.level
_root.addHandler(_silent)
_root.setLevel(logging.ERROR)
try:
    import apache_beam as beam
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions
finally:
    _root.removeHandler(_silent)
    _root.setLevel(_level)

__all__ = ["CompressionTypes", "FileSystems", "PipelineOptions", "beam"]
