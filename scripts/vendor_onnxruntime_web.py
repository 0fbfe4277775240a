"""Fetch the onnxruntime-web files the student page needs from the npm registry and put them in
``src/moodlens/web/static/vendor/onnxruntime-web/`` (shipped in the Python package, so that
``pip install`` needs no node and the page loads nothing from a CDN).

    python scripts/vendor_onnxruntime_web.py              # the pinned VERSION
    python scripts/vendor_onnxruntime_web.py --version 1.31.0

Needs ``npm`` (only here, when updating). It runs ``npm pack onnxruntime-web@VERSION``, checks
the tarball's integrity against the registry's (``npm view ... dist.integrity``), copies the three
files the WebAssembly-only build loads (see FILES) and the MIT licence, and writes
``VERSION.json`` with the version and each file's SHA-256. docs/privacy.md#the-browser-runtime says
why these files and how big they are.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "1.30.0"
# ort.wasm.min.js: the WebAssembly-only API (global ``ort``, no WebGL/WebGPU); it imports the
# Emscripten loader (.mjs), which fetches the SIMD build (threaded where the page is
# cross-origin isolated, one thread otherwise: the same .wasm serves both).
FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
# The npm tarball carries no licence file; the licence of the onnxruntime repository (MIT) is
# the package's licence ("license": "MIT" in its package.json).
LICENSE_URL = "https://github.com/microsoft/onnxruntime/blob/v{version}/LICENSE"
MIT = """MIT License

Copyright (c) Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""
TARGET = Path(__file__).resolve().parents[1] / "src/moodlens/web/static/vendor/onnxruntime-web"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default=VERSION)
    args = parser.parse_args()
    spec = f"onnxruntime-web@{args.version}"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", spec, "--pack-destination", tmp], check=True, capture_output=True)
        tarball = next(Path(tmp).glob("onnxruntime-web-*.tgz"))
        expected = subprocess.run(["npm", "view", spec, "dist.integrity"], check=True, capture_output=True,
                                  text=True).stdout.strip()
        algo, digest = expected.split("-", 1)
        actual = base64.b64encode(hashlib.new(algo, tarball.read_bytes()).digest()).decode()
        if actual != digest:
            raise SystemExit(f"{tarball.name}: integrity {algo}-{actual} is not the registry's {expected}")
        with tarfile.open(tarball) as tar:
            tar.extractall(tmp, members=[m for m in tar.getmembers() if m.name in {f"package/dist/{f}" for f in FILES}],
                           filter="data")
        if TARGET.exists():
            shutil.rmtree(TARGET)
        TARGET.mkdir(parents=True)
        sums = {}
        for name in FILES:
            data = (Path(tmp) / "package/dist" / name).read_bytes()
            (TARGET / name).write_bytes(data)
            sums[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (TARGET / "LICENSE").write_text(MIT)
    (TARGET / "VERSION.json").write_text(json.dumps(
        {"package": "onnxruntime-web", "version": args.version, "npm_integrity": expected,
         "license": "MIT", "license_source": LICENSE_URL.format(version=args.version), "files": sums}, indent=1) + "\n")
    total = sum(v["bytes"] for v in sums.values())
    print(f"onnxruntime-web {args.version}: {len(FILES)} files, {total / 2**20:.1f} MiB in {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
