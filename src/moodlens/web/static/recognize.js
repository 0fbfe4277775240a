// Recognition in the student's browser: detect -> pose -> crop -> classify, as moodlens.recognizer
// does, with the package's own ONNX files on onnxruntime-web (WebAssembly SIMD; threads when the
// page is cross-origin isolated). Every number that shapes the result (detector thresholds and
// input size, the generic face and limits of the pose, crop framing, the model's input size,
// mean, std and classes, min_face, uncertain_below) comes from the server's /api/browser, which
// reads them from the Python objects and the model's metadata; none is written here. Frames never
// leave this page: only numbers do.
"use strict";

const Recognize = (() => {
  const ORT_PATH = "/static/vendor/onnxruntime-web/";

  // A 1-function module using a v128 instruction: validates only where WebAssembly SIMD exists
  // (onnxruntime-web ships no build without SIMD).
  const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8,
    0, 65, 0, 253, 15, 253, 98, 11]);

  function supported() {
    try {
      return typeof WebAssembly === "object" && WebAssembly.validate(SIMD_PROBE);
    } catch (e) {
      return false;
    }
  }

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      if (window.ort) { resolve(); return; }
      const s = document.createElement("script");
      s.src = src; s.onload = resolve; s.onerror = () => reject(new Error("cannot load " + src));
      document.head.append(s);
    });
  }

  // --- pixels, as OpenCV computes them ----------------------------------------------------------

  // cv2.COLOR_RGB2GRAY's fixed-point weights (0.299, 0.587, 0.114 in 15 bits).
  function grey(rgba, n) {
    const out = new Uint8Array(n);
    for (let i = 0, j = 0; i < n; i++, j += 4) out[i] = (rgba[j] * 9798 + rgba[j + 1] * 19235 + rgba[j + 2] * 3735 + 16384) >> 15;
    return out;
  }

  // cvRound: to the nearest integer, ties to even.
  function rint(v) {
    const r = Math.round(v);
    return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
  }

  // cv2.INTER_AREA's weights along one axis: each output pixel averages the input pixels it
  // covers, partly covered ones by the covered fraction (OpenCV's computeResizeAreaTab).
  function areaTable(src, dst) {
    const scale = src / dst, table = [];
    for (let d = 0; d < dst; d++) {
      const f1 = d * scale, f2 = f1 + scale, cell = Math.min(scale, src - f1);
      let s1 = Math.ceil(f1), s2 = Math.floor(f2);
      s2 = Math.min(s2, src - 1); s1 = Math.min(s1, s2);
      const taps = [];
      if (s1 - f1 > 1e-3) taps.push([s1 - 1, Math.fround((s1 - f1) / cell)]);
      for (let s = s1; s < s2; s++) taps.push([s, Math.fround(1 / cell)]);
      if (f2 - s2 > 1e-3) taps.push([s2, Math.fround(Math.min(Math.min(f2 - s2, 1), cell) / cell)]);
      table.push(taps);
    }
    return table;
  }

  // cv2.INTER_LINEAR's source index and 11-bit weights along one axis (half-pixel centres,
  // edges clamped; positions in float32 as OpenCV computes them).
  function linearTable(src, dst) {
    const scale = 1 / (dst / src), index = new Int32Array(dst), weight = new Int32Array(2 * dst);
    for (let d = 0; d < dst; d++) {
      let f = Math.fround((d + 0.5) * scale - 0.5), s = Math.floor(f);
      f = Math.fround(f - s);
      if (s < 0) { s = 0; f = 0; }
      if (s >= src - 1) { s = src - 1; f = 0; }
      index[d] = s; weight[2 * d] = rint(Math.fround(1 - f) * 2048); weight[2 * d + 1] = rint(f * 2048);
    }
    return { index, weight };
  }

  // cv2.resize(..., INTER_LINEAR) on uint8: OpenCV's fixed-point rows then columns, bit for bit.
  function resizeLinear(pixels, w, h, channels, dw, dh, keep) {
    const tx = linearTable(w, dw), ty = linearTable(h, dh), rows = new Map();
    const row = (sy) => {
      if (!rows.has(sy)) {
        const buf = new Int32Array(dw * keep), base = sy * w * channels;
        for (let x = 0; x < dw; x++) {
          const p0 = base + tx.index[x] * channels, p1 = base + Math.min(tx.index[x] + 1, w - 1) * channels;
          const a0 = tx.weight[2 * x], a1 = tx.weight[2 * x + 1];
          for (let c = 0; c < keep; c++) buf[x * keep + c] = pixels[p0 + c] * a0 + pixels[p1 + c] * a1;
        }
        rows.set(sy, buf);
      }
      return rows.get(sy);
    };
    const out = new Uint8Array(dw * dh * keep);
    for (let y = 0; y < dh; y++) {
      const r0 = row(ty.index[y]), r1 = row(Math.min(ty.index[y] + 1, h - 1));
      const b0 = ty.weight[2 * y], b1 = ty.weight[2 * y + 1], base = y * dw * keep;
      for (let i = 0; i < r0.length; i++) {
        const v = (((b0 * (r0[i] >> 4)) >> 16) + ((b1 * (r1[i] >> 4)) >> 16) + 2) >> 2;
        out[base + i] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
      for (const sy of rows.keys()) if (sy < ty.index[y]) rows.delete(sy);
    }
    return out;
  }

  // cv2.resize(..., INTER_AREA) on `channels`-interleaved uint8 pixels (the first `keep` channels
  // of each): rows first, then columns, in float32 as OpenCV does (each product rounded to
  // float32 before it is added); rounded to uint8 halves up when shrinking by a whole factor (its
  // integer path), else to even.
  function resizeArea(pixels, w, h, channels, dw, dh, keep = channels) {
    const tx = areaTable(w, dw), ty = areaTable(h, dh);
    const round = w % dw === 0 && h % dh === 0 ? Math.round : rint;
    const srcIndex = [], weight = [], first = new Int32Array(dw + 1);
    tx.forEach((taps, x) => {
      first[x] = srcIndex.length;
      for (const [sx, wx] of taps) { srcIndex.push(sx * channels); weight.push(wx); }
    });
    first[dw] = srcIndex.length;
    const si = Int32Array.from(srcIndex), wt = Float32Array.from(weight);
    const rows = new Map(), out = new Uint8Array(dw * dh * keep), acc = new Float32Array(dw * keep);
    const row = (sy) => {  // one source row resized horizontally
      if (!rows.has(sy)) {
        const buf = new Float32Array(dw * keep), base = sy * w * channels;
        for (let x = 0; x < dw; x++) {
          for (let t = first[x]; t < first[x + 1]; t++) {
            const p = base + si[t], k = wt[t];
            for (let c = 0; c < keep; c++) buf[x * keep + c] += Math.fround(pixels[p + c] * k);
          }
        }
        rows.set(sy, buf);
      }
      return rows.get(sy);
    };
    for (let y = 0; y < dh; y++) {
      acc.fill(0);
      for (const [sy, wy] of ty[y]) {
        const buf = row(sy), k = Math.fround(wy);
        for (let i = 0; i < acc.length; i++) acc[i] += Math.fround(buf[i] * k);
      }
      for (let i = 0; i < acc.length; i++) out[y * dw * keep + i] = Math.min(255, Math.max(0, round(acc[i])));
      if (ty[y + 1]) for (const sy of rows.keys()) if (sy < ty[y + 1][0][0]) rows.delete(sy);
    }
    return out;
  }

  // moodlens.crop.crop_faces without alignment: a square of side max(w, h) * scale around the
  // box centre (moved down by shift * side), edge pixels replicated, warped bilinearly to at
  // most twice the model size, then shrunk with area interpolation. The warp is OpenCV's own
  // arithmetic (cv2.warpAffine): source positions in 1/32 pixel, 15-bit weights, so the crop
  // is the same to the grey level.
  function cropFace(g, width, height, box, size, scale, shift) {
    const [x, y, w, h] = box;
    const side = Math.max(w, h) * scale;
    const cx = x + w / 2, cy = y + h / 2 + shift * side;
    const out = Math.trunc(Math.min(Math.max(side, size), 2 * size));
    // getRotationMatrix2D((cx, cy), 0, k) moved by (out/2 - cx, out/2 - cy), then inverted
    const k = out / side, tx = (1 - k) * cx + (out / 2 - cx), ty = (1 - k) * cy + (out / 2 - cy);
    const a = k * (1 / (k * k)), bx = -a * tx, by = -a * ty;
    const patch = new Uint8Array(out * out), dx = new Int32Array(out);
    for (let u = 0; u < out; u++) dx[u] = rint(a * u * 1024);
    const X0 = rint(bx * 1024) + 16;
    for (let v = 0; v < out; v++) {
      const Y = (rint((a * v + by) * 1024) + 16) >> 5, sy = Y >> 5, fy = Y & 31;
      const y0 = Math.min(height - 1, Math.max(0, sy)) * width, y1 = Math.min(height - 1, Math.max(0, sy + 1)) * width;
      for (let u = 0; u < out; u++) {
        const X = (X0 + dx[u]) >> 5, sx = X >> 5, fx = X & 31;
        const x0 = Math.min(width - 1, Math.max(0, sx)), x1 = Math.min(width - 1, Math.max(0, sx + 1));
        const sum = ((g[y0 + x0] * (32 - fx) + g[y0 + x1] * fx) * (32 - fy) + (g[y1 + x0] * (32 - fx) + g[y1 + x1] * fx) * fy) * 32;
        patch[v * out + u] = (sum + 16384) >> 15;
      }
    }
    return out === size ? patch : resizeArea(patch, out, out, 1, size, size);  // out > size here
  }

  // --- detectors ---------------------------------------------------------------------------------

  function iou(a, b) {
    const ix = Math.max(0, Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]));
    const iy = Math.max(0, Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]));
    const inter = ix * iy, union = a[2] * a[3] + b[2] * b[3] - inter;
    return union > 0 ? inter / union : 0;
  }

  // cv2.dnn.NMSBoxes: best first, dropping boxes that overlap a kept one by more than `limit`.
  function nms(cands, limit) {
    cands.sort((a, b) => b.score - a.score);
    const kept = [];
    for (const c of cands) if (kept.every((k) => iou(k.box, c.box) <= limit)) kept.push(c);
    return kept;
  }

  // The scale (<= 1) each detector sees a frame at: its frame_scale() in moodlens.detect.
  const SCALES = {
    centerface: (spec, width, height) => (spec.input_size ? Math.min(1, spec.input_size / Math.max(width, height)) : 1),
    yunet: (spec, width, height) => Math.min(1, spec.smallest_face / spec.min_face,
      spec.largest_face / Math.max(1, Math.min(width, height))),
  };

  // The frame as the network's input: shrunk to the detector's scale, padded with zeros to a
  // multiple of 32, planar float in the channel order the detector wants.
  function detectorInput(rgba, width, height, spec) {
    const scale = SCALES[spec.name](spec, width, height);
    let pixels = rgba, w = width, h = height, stride = 4;
    if (scale < 1) {
      w = Math.max(1, Math.round(width * scale)); h = Math.max(1, Math.round(height * scale));
      pixels = (scale < 0.75 ? resizeArea : resizeLinear)(rgba, width, height, 4, w, h, 3);
      stride = 3;
    }
    const pw = Math.ceil(w / 32) * 32, ph = Math.ceil(h / 32) * 32, plane = pw * ph;
    const data = new Float32Array(3 * plane);
    const order = spec.channels === "bgr" ? [2, 1, 0] : [0, 1, 2];
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const p = (y * w + x) * stride, q = y * pw + x;
        data[q] = pixels[p + order[0]]; data[plane + q] = pixels[p + order[1]]; data[2 * plane + q] = pixels[p + order[2]];
      }
    }
    // the scale actually applied, after rounding the size to whole pixels
    return { tensor: new ort.Tensor("float32", data, [1, 3, ph, pw]), sx: w / width, sy: h / height, pw, ph };
  }

  // Candidates in network pixels: {box: [x, y, w, h], score, marks: five [x, y] landmarks}.
  const DECODERS = {
    // CenterFace: a face-centre heatmap at 1/4 resolution with log box sizes and centre offsets
    // (moodlens.detect.CenterFaceDetector).
    centerface(out, input, spec, names) {
      const [heat, size, offset, lm] = names.slice(0, 4).map((k) => out[k]);
      const [, , fh, fw] = heat.dims, plane = fh * fw, cands = [];
      for (let i = 0; i < plane; i++) {
        const score = heat.data[i];
        if (score <= spec.score_threshold) continue;
        const y = Math.floor(i / fw), x = i - y * fw;
        const bh = Math.exp(size.data[i]) * 4, bw = Math.exp(size.data[plane + i]) * 4;
        const x0 = (x + offset.data[plane + i] + 0.5) * 4 - bw / 2, y0 = (y + offset.data[i] + 0.5) * 4 - bh / 2;
        // landmarks: channels (y0, x0, y1, x1, ...) relative to the box corner, in box units
        const marks = [0, 1, 2, 3, 4].map((k) => [x0 + bw * lm.data[(2 * k + 1) * plane + i], y0 + bh * lm.data[2 * k * plane + i]]);
        cands.push({ box: [x0, y0, bw, bh], score, marks });
      }
      return cands;
    },
    // YuNet: per stride 8/16/32 a grid of priors with class and objectness scores (the face
    // score is their geometric mean), box and landmark offsets in stride units (OpenCV's
    // FaceDetectorYN).
    yunet(out, input, spec) {
      const cands = [];
      for (const stride of [8, 16, 32]) {
        const cls = out[`cls_${stride}`].data, obj = out[`obj_${stride}`].data, bbox = out[`bbox_${stride}`].data;
        const kps = out[`kps_${stride}`].data;
        const cols = input.pw / stride, n = cls.length;
        for (let i = 0; i < n; i++) {
          const score = Math.sqrt(Math.min(1, Math.max(0, cls[i])) * Math.min(1, Math.max(0, obj[i])));
          if (!(score > spec.score_threshold)) continue;
          const r = Math.floor(i / cols), c = i - r * cols;
          const cx = (c + bbox[4 * i]) * stride, cy = (r + bbox[4 * i + 1]) * stride;
          const w = Math.exp(bbox[4 * i + 2]) * stride, h = Math.exp(bbox[4 * i + 3]) * stride;
          const marks = [0, 1, 2, 3, 4].map((k) => [(c + kps[10 * i + 2 * k]) * stride, (r + kps[10 * i + 2 * k + 1]) * stride]);
          cands.push({ box: [cx - w / 2, cy - h / 2, w, h], score, marks });
        }
      }
      return cands;
    },
  };

  // --- head pose: moodlens.pose.estimate_pose ---------------------------------------------------

  // cv2.Rodrigues: the rotation matrix (rows) of a rotation vector.
  function rodrigues(x, y, z) {
    const theta = Math.hypot(x, y, z);
    if (theta < Number.EPSILON) return [[1, 0, 0], [0, 1, 0], [0, 0, 1]];
    const c = Math.cos(theta), s = Math.sin(theta), c1 = 1 - c, kx = x / theta, ky = y / theta, kz = z / theta;
    return [[c + c1 * kx * kx, c1 * kx * ky - s * kz, c1 * kx * kz + s * ky],
      [c1 * ky * kx + s * kz, c + c1 * ky * ky, c1 * ky * kz - s * kx],
      [c1 * kz * kx - s * ky, c1 * kz * ky + s * kx, c + c1 * kz * kz]];
  }

  // cv2.projectPoints through a pinhole centred on `centre`: [u0, v0, u1, v1, ...] of the model's
  // points at pose p = [rotation vector, translation].
  function projectModel(model, p, focal, centre) {
    const r = rodrigues(p[0], p[1], p[2]), uv = [];
    for (const m of model) {
      const [x, y, z] = r.map((row, i) => row[0] * m[0] + row[1] * m[1] + row[2] * m[2] + p[3 + i]);
      uv.push(focal * x / z + centre[0], focal * y / z + centre[1]);
    }
    return uv;
  }

  // Solves a x = b (a small square system) by Gaussian elimination with partial pivoting.
  function solve(a, b) {
    const n = b.length, m = a.map((row, i) => [...row, b[i]]);
    for (let k = 0; k < n; k++) {
      let p = k;
      for (let i = k + 1; i < n; i++) if (Math.abs(m[i][k]) > Math.abs(m[p][k])) p = i;
      [m[k], m[p]] = [m[p], m[k]];
      for (let i = k + 1; i < n; i++) {
        const f = m[i][k] / m[k][k];
        for (let j = k; j <= n; j++) m[i][j] -= f * m[k][j];
      }
    }
    const x = new Array(n);
    for (let i = n - 1; i >= 0; i--) {
      let s = m[i][n];
      for (let j = i + 1; j < n; j++) s -= m[i][j] * x[j];
      x[i] = s / m[i][i];
    }
    return x;
  }

  // cv2.solvePnP(SOLVEPNP_ITERATIVE) from the guess `start`: OpenCV's Levenberg-Marquardt
  // (CvLevMarq: damping 10^-3 scaling J'J's diagonal, tenfold up on a worse step and retried,
  // tenfold down on a better one; at most 20 steps, or until a step moves the parameters by less
  // than float precision), so it settles on the same one of the nearly planar points' two mirror
  // solutions. The Jacobian is numerical (central differences), OpenCV's is analytic: both
  // reach the same minimum.
  function fitPose(model, points, focal, centre, start) {
    const residuals = (p) => projectModel(model, p, focal, centre).map((v, i) => v - points[i >> 1][i & 1]);
    const norm = (v) => Math.hypot(...v);
    const jacobian = (p) => p.map((v, k) => {
      const h = 1e-6 * Math.max(1, Math.abs(v)), plus = [...p], minus = [...p];
      plus[k] += h; minus[k] -= h;
      const a = residuals(plus), b = residuals(minus);
      return a.map((e, i) => (e - b[i]) / (2 * h));  // column k
    });
    let p = start, e = residuals(p), prevError = norm(e), lg10 = -3;
    for (let steps = 1; ; steps++) {
      const J = jacobian(p);
      const JtJ = J.map((a) => J.map((b) => a.reduce((s, v, i) => s + v * b[i], 0)));
      const Jte = J.map((a) => a.reduce((s, v, i) => s + v * e[i], 0));
      const prev = p;
      let error;
      for (;;) {
        const damped = JtJ.map((row, i) => row.map((v, j) => (i === j ? v * (1 + 10 ** lg10) : v)));
        const dx = solve(damped, Jte);
        p = prev.map((v, i) => v - dx[i]);
        e = residuals(p);
        error = norm(e);
        if (!(error > prevError) || ++lg10 > 16) break;
      }
      lg10 = Math.max(lg10 - 1, -16);
      const moved = norm(p.map((v, i) => v - prev[i])) / (norm(prev) + Number.EPSILON);
      if (steps >= 20 || moved < 1.1920929e-7) return p;  // FLT_EPSILON
      prevError = error;
    }
  }

  // moodlens.pose.angles: yaw, pitch and roll in degrees of a model-to-camera rotation.
  function angles(r) {
    const deg = 180 / Math.PI;
    const forward = [-r[0][2], -r[1][2], -r[2][2]], up = [-r[0][1], -r[1][1], -r[2][1]];
    const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
    const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    let ownLeft = cross([0, -1, 0], forward);
    const length = Math.hypot(...ownLeft);
    ownLeft = ownLeft.map((v) => v / length);
    const levelUp = cross(forward, ownLeft);
    return {
      yaw: deg * Math.atan2(forward[0], -forward[2]),
      pitch: deg * Math.atan2(-forward[1], Math.hypot(forward[0], forward[2])),
      roll: deg * Math.atan2(dot(up, ownLeft), dot(up, levelUp)),
    };
  }

  // The head pose {yaw, pitch, roll, confidence} of five landmarks ([x, y] pixels in the
  // detectors' order) in a frame `width` wide, or null where they cannot support one; `c` is
  // the server's moodlens.pose.POSE_CONSTANTS.
  function estimatePose(marks, width, c) {
    if (!marks || marks.length !== 5 || !marks.every((m) => m.length === 2 && m.every(Number.isFinite))) return null;
    const dist = (a, b) => Math.hypot(a[0] - b[0], a[1] - b[1]);
    const mid = (a, b) => [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
    const eyes = dist(marks[1], marks[0]), eyesToMouth = dist(mid(marks[3], marks[4]), mid(marks[0], marks[1]));
    if (eyes < c.min_eyes || eyesToMouth < c.min_eyes_to_mouth || eyes < c.min_eye_ratio * eyesToMouth) return null;
    const model = c.face_model, focal = c.focal_per_width * Math.max(width, 1);
    const centre = [0, 1].map((k) => marks.reduce((s, m) => s + m[k], 0) / 5);
    // a frontal face at the distance its eye spacing implies
    const start = [0, 0, 0, 0, 0, focal * (model[1][0] - model[0][0]) / eyes];
    const p = fitPose(model, marks, focal, centre, start);
    if (!p.every(Number.isFinite) || p[5] <= 0) return null;
    const uv = projectModel(model, p, focal, centre);
    const rms = Math.sqrt(marks.reduce((s, m, i) => s + (uv[2 * i] - m[0]) ** 2 + (uv[2 * i + 1] - m[1]) ** 2, 0) / 5);
    return { ...angles(rodrigues(p[0], p[1], p[2])), confidence: Math.exp(-rms / eyes / c.error_scale) };
  }

  class Recognizer {
    // config: the server's /api/browser answer. Without `emotions` (an attention-only session)
    // the emotion model is never fetched: faces and head poses only.
    static async create(config, { emotions = true } = {}) {
      if (!supported()) throw new Error("this browser has no WebAssembly SIMD");
      if (!DECODERS[config.detector.name] || !SCALES[config.detector.name]) throw new Error(`no browser decoder for the ${config.detector.name} detector`);
      await loadScript(ORT_PATH + "ort.wasm.min.js");
      ort.env.wasm.wasmPaths = ORT_PATH;
      // Threads need SharedArrayBuffer, which browsers give only to cross-origin isolated pages.
      // Half the cores at most: the video call and the page need the rest (on a busy 2-core
      // machine two threads ran YuNet at half the speed of one: docs/privacy.md).
      const cores = navigator.hardwareConcurrency || 2;
      ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.max(1, Math.min(4, Math.floor(cores / 2))) : 1;
      const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
      const [detector, model] = await Promise.all([
        ort.InferenceSession.create(config.detector.url, options),
        emotions ? ort.InferenceSession.create(config.model.url, options) : null,
      ]);
      return new Recognizer(config, detector, model);
    }

    constructor(config, detector, model) {
      Object.assign(this, { config, detector, model });
      this.threads = ort.env.wasm.numThreads;
    }

    get classes() { return this.config.model.spec.classes; }

    // Faces of an ImageData frame, largest first: [{box, detection_score, landmarks, pose, scores,
    // emotion, status}] (scores and pose before smoothing; the server smooths and labels what it
    // stores; no scores, emotion or status without the emotion model), with timings.
    async analyze(image) {
      const t0 = performance.now();
      const faces = await this.detect(image);
      const t1 = performance.now();
      if (this.model) await this.classify(image, faces);
      const t2 = performance.now();
      return { faces, shape: [image.height, image.width], ms: { detect: t1 - t0, classify: t2 - t1 } };
    }

    async detect(image) {
      const spec = this.config.detector, { width, height } = image;
      if (width < 2 || height < 2) return [];
      const input = detectorInput(image.data, width, height, spec);
      const out = await this.detector.run({ [this.detector.inputNames[0]]: input.tensor });
      const faces = [];
      const cands = DECODERS[spec.name](out, input, spec, this.detector.outputNames);
      for (const c of nms(cands, spec.nms_threshold)) {
        const [x, y, w, h] = [c.box[0] / input.sx, c.box[1] / input.sy, c.box[2] / input.sx, c.box[3] / input.sy];
        const x0 = Math.max(0, Math.round(x)), y0 = Math.max(0, Math.round(y));
        const x1 = Math.min(width, Math.round(x + w)), y1 = Math.min(height, Math.round(y + h));
        if (x1 - x0 < 1 || y1 - y0 < 1) continue;
        const landmarks = c.marks.map(([mx, my]) => [mx / input.sx, my / input.sy]);
        faces.push({ box: [x0, y0, x1 - x0, y1 - y0], detection_score: c.score, landmarks });
      }
      faces.sort((a, b) => b.box[2] * b.box[3] - a.box[2] * a.box[3]);
      const kept = faces.slice(0, this.config.max_faces);
      for (const f of kept) f.pose = estimatePose(f.landmarks, width, this.config.pose);
      return kept;
    }

    async classify(image, faces) {
      const { spec } = this.config.model, { crop } = this.config, size = spec.input_size;
      const readable = [];
      for (const f of faces) {
        Object.assign(f, { scores: {}, emotion: null, status: "too_small" });
        if (Math.min(f.box[2], f.box[3]) >= this.config.min_face) readable.push(f);
      }
      if (!readable.length) return faces;
      const g = grey(image.data, image.width * image.height);
      const batch = new Float32Array(readable.length * size * size);
      // preprocess(): x / (255 * std) - mean / std
      const k = 1 / (255 * spec.std), m = spec.mean / spec.std;
      readable.forEach((f, i) => {
        const c = cropFace(g, image.width, image.height, f.box, size, crop.scale, crop.shift);
        for (let j = 0; j < c.length; j++) batch[i * size * size + j] = c[j] * k - m;
      });
      const input = new ort.Tensor("float32", batch, [readable.length, 1, size, size]);
      const out = await this.model.run({ [this.model.inputNames[0]]: input });
      const probs = out[this.model.outputNames[0]].data, n = this.classes.length;
      readable.forEach((f, i) => {
        f.scores = Object.fromEntries(this.classes.map((c, j) => [c, probs[i * n + j]]));
        const best = this.classes.reduce((a, b) => (f.scores[b] > f.scores[a] ? b : a));
        [f.emotion, f.status] = f.scores[best] >= this.config.uncertain_below ? [best, "ok"] : [null, "uncertain"];
      });
      return faces;
    }
  }

  return { Recognizer, supported, estimatePose };
})();
