// Browser mode for the student page: analyse the camera here (recognize.js) and send only the
// main face's box, head pose and scores over the WebSocket. A FrameSender (moodlens.js) whose loop
// sends numbers instead of pictures, so the page treats both modes alike.
"use strict";

class ScoreSender extends FrameSender {
  constructor(video, recognizer, path, { maxWidth = 640, fps = 2, onReply, onAnalysed, onClose, onState } = {}) {
    super(video, path, { maxWidth, fps, onReply, onClose, onState });
    Object.assign(this, { recognizer, onAnalysed, lastMessage: null });
    this.canvas.getContext("2d", { willReadFrequently: true });  // its pixels are read, never encoded
  }

  // Analyse the newest frame here; send the main face's box, pose and probabilities (none
  // without the emotion model), or null: the only thing that leaves the computer.
  async sendOne(current) {
    const ctx = this.draw();
    const result = await this.recognizer.analyze(ctx.getImageData(0, 0, this.canvas.width, this.canvas.height));
    if (!current() || !this.socket.ready) return;
    if (this.onAnalysed) this.onAnalysed(result);
    const main = result.faces[0];  // the largest face is the student's own
    const face = main ? { box: main.box, pose: main.pose && roundPose(main.pose) } : null;
    if (main && main.scores) face.scores = roundScores(main.scores);
    this.lastMessage = JSON.stringify({ face });
    this.send(this.lastMessage);
  }
}

function roundScores(scores) {
  return Object.fromEntries(Object.entries(scores).map(([k, p]) => [k, Math.round(p * 1e4) / 1e4]));
}

// Hundredths of a degree: far below what five landmarks can tell apart.
function roundPose({ yaw, pitch, roll, confidence }) {
  const r = (v, k) => Math.round(v * k) / k;
  return { yaw: r(yaw, 100), pitch: r(pitch, 100), roll: r(roll, 100), confidence: r(confidence, 1e4) };
}

// Which mode the student page runs: "browser" when the server offers the browser pipeline, this
// browser has WebAssembly SIMD and a test analysis of a width x height frame is fast enough for
// `fps`; else "server" (the camera picture goes to the server), with the reason. `forced`
// ("browser" or "server", from the page's address) skips the speed test or the browser. Without
// `emotions` (an attention-only session) the emotion model is neither loaded nor run.
async function chooseMode(fps, forced = null, emotions = true, width = 320, height = 240) {
  if (forced === "server") return { mode: "server", reason: "chosen in the page's address" };
  try {
    const config = await ML.api("/api/browser");
    if (!config.available) return { mode: "server", reason: config.reason };
    if (!Recognize.supported()) return { mode: "server", reason: "this browser has no WebAssembly SIMD" };
    const recognizer = await Recognize.Recognizer.create(config, { emotions });
    const blank = new ImageData(width, height);
    await recognizer.analyze(blank);  // the first run compiles; time the second
    const t0 = performance.now();
    await recognizer.analyze(blank);
    const ms = performance.now() - t0;
    if (ms > 1000 / fps && forced !== "browser") return { mode: "server", reason: `this device needs ${Math.round(ms)} ms a frame` };
    return { mode: "browser", recognizer, ms };
  } catch (e) {
    return { mode: "server", reason: e.message };
  }
}
