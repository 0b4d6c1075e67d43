"""The notebooks run headless, top to bottom, on the tiny preset (as a user would run them, via a Jupyter kernel)."""
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.mark.parametrize("name", ["inspect_data", "finetune"])
def test_notebook_executes(name, tmp_path, monkeypatch):
    # The kernel inherits this environment: tiny settings, one device, and a compilation cache so the three
    # trainings of the fine-tune notebook (same step function) compile once.
    for key, value in {"NB_PRESET": "tiny", "NB_STEPS": "6", "NB_BATCH": "4", "NB_WORKDIR": str(tmp_path / "work"),
                       "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
                       "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
                       "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                       "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the notebook should draw its figures"
    if name == "finetune":
        text = "".join(o.get("text", "") for o in outputs)
        assert "validation velocity loss: fine-tuned" in text
        assert (tmp_path / "work" / "finetune" / "policy" / "config.json").is_file()
