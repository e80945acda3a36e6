"""A notebook that trains with LiveCurves keeps a PNG of the curves and the cell's other output when saved."""

from __future__ import annotations

import base64
import io
import os

import nbformat
import pytest
from matplotlib.image import imread
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

TRAIN_CELL = """
import numpy as np
import mindspore as ms
from mindspore import nn
from mindspore.dataset import NumpySlicesDataset
from mindspore.train import Model
from sklearn.datasets import load_digits
from ms_notebook.runs.curves import LiveCurves

digits = load_digits()
x = (digits.images[:256] / 16.0).astype(np.float32)[:, None]
y = digits.target[:256].astype(np.int32)
data = lambda: NumpySlicesDataset((x, y), column_names=["image", "label"], shuffle=False).batch(32)
net = nn.SequentialCell(nn.Flatten(), nn.Dense(64, 32), nn.ReLU(), nn.Dense(32, 10))
model = Model(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"),
              nn.Adam(net.trainable_params(), 0.01), metrics={"accuracy"})
print("before training")
curves = LiveCurves(label="digits", max_redraws_per_s=20)
model.fit(3, data(), valid_dataset=data(), callbacks=[curves])
print("after training", len(curves.history), "steps")
"""


def test_saved_notebook_keeps_the_curves_png_and_the_cells_prints(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('an earlier cell')"), nbformat.v4.new_code_cell(TRAIN_CELL)]
    os.environ.setdefault("GLOG_v", "3")
    client = NotebookClient(nb, kernel_name="python3", store_widget_state=True, timeout=300,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    path = tmp_path / "trained.ipynb"
    nbformat.write(nb, path)
    saved = nbformat.read(path, as_version=4)
    outputs = saved.cells[1].outputs
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "before training" in text
    assert "after training 24 steps" in text
    pngs = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(pngs) == 1, [sorted(o.get("data", {})) for o in outputs]
    # the live widget view was replaced in place by the final static figure
    assert "application/vnd.jupyter.widget-view+json" not in pngs[0].data
    image = imread(io.BytesIO(base64.b64decode(pngs[0].data["image/png"])), format="png")
    assert image.shape[1] > 300
    assert saved.cells[0].outputs[0].text == "an earlier cell\n"
