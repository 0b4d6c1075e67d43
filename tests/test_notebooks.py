"""The notebooks run headless, top to bottom, on the tiny preset (as a user would run them, via a Jupyter kernel)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.train_support import subprocess_env

pytestmark = pytest.mark.slow  # end-to-end training runs

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.mark.parametrize("name", ["inspect_data", "finetune"])
def test_notebook_executes(name, tmp_path, tmp_path_factory, monkeypatch):
    # The kernel inherits this environment: tiny settings, one device, and the session's compilation cache, so the
    # three trainings of the fine-tune notebook (and test_train_resume.py's runs: same step) compile once.
    env = {
        **subprocess_env(tmp_path_factory, devices=1),
        "NB_PRESET": "tiny",
        "NB_STEPS": "24",
        "NB_BATCH": "4",
        "NB_WORKDIR": str(tmp_path / "work"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the notebook should draw its figures"
    text = "".join(o.get("text", "") for o in outputs)
    if name == "inspect_data":
        # the sample's scripted play presses FIRE (south) on a real share of its steps
        rates = {line.split(":")[0].strip(): line for line in text.splitlines() if "pressed" in line}
        assert "south" in rates and "pressed 0.0%" not in rates["south"], text
    if name == "finetune":
        assert "validation velocity loss: fine-tuned" in text
        assert (tmp_path / "work" / "finetune" / "policy" / "config.json").is_file()
