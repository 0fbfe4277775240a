// Browser mode for the student page: analyse the camera here (recognize.js) and send only the
// main face's box and scores over the WebSocket. The same interface as FrameSender (moodlens.js),
// so the page treats both modes alike.
"use strict";

class ScoreSender {
  constructor(video, recognizer, path, { maxWidth = 640, fps = 2, onReply, onAnalysed, onClose } = {}) {
    Object.assign(this, { video, recognizer, path, maxWidth, fps, onReply, onAnalysed, onClose });
    this.canvas = document.createElement("canvas");
    this.sent = 0; this.sentAt = new Map(); this.times = []; this.latencies = []; this.running = false;
    this.lastMessage = null;
  }

  start() {
    this.ws = new WebSocket(ML.wsUrl(this.path));
    this.ws.onmessage = (event) => this.answer(JSON.parse(event.data));
    this.ws.onclose = (event) => { this.running = false; if (this.onClose) this.onClose(event); };
    this.ws.onopen = () => { this.running = true; this.loop(); };
  }

  stop() {
    this.running = false;
    if (this.ws) this.ws.close();
  }

  answer(reply) {
    const now = performance.now(), sentAt = this.sentAt.get(reply.seq);
    this.sentAt.delete(reply.seq);
    if (sentAt !== undefined) this.latencies.push(now - sentAt);
    if (this.latencies.length > 20) this.latencies.shift();
    this.times.push(now);
    while (this.times.length && now - this.times[0] > 3000) this.times.shift();
    if (this.onReply) this.onReply(reply, FrameSender.prototype.stats.call(this));
  }

  // The camera frame as ImageData, at most maxWidth wide.
  grab() {
    const scale = Math.min(1, this.maxWidth / this.video.videoWidth);
    this.canvas.width = Math.round(this.video.videoWidth * scale);
    this.canvas.height = Math.round(this.video.videoHeight * scale);
    const ctx = this.canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(this.video, 0, 0, this.canvas.width, this.canvas.height);
    return ctx.getImageData(0, 0, this.canvas.width, this.canvas.height);
  }

  async loop() {
    let last = 0;
    while (this.running) {
      const wait = 1000 / this.fps - (performance.now() - last);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (!this.running) break;
      if (this.video.readyState < 2 || !this.video.videoWidth) { await new Promise((r) => setTimeout(r, 15)); continue; }
      last = performance.now();
      const result = await this.recognizer.analyze(this.grab());
      if (!this.running || this.ws.readyState !== WebSocket.OPEN) continue;
      if (this.onAnalysed) this.onAnalysed(result);
      const main = result.faces[0];  // the largest face is the student's own
      // Only this leaves the computer: the main face's box and its probabilities, or null.
      this.lastMessage = JSON.stringify({ face: main ? { box: main.box, scores: roundScores(main.scores) } : null });
      this.sent += 1;
      this.sentAt.set(this.sent, performance.now());
      this.ws.send(this.lastMessage);
    }
  }
}

function roundScores(scores) {
  return Object.fromEntries(Object.entries(scores).map(([k, p]) => [k, Math.round(p * 1e4) / 1e4]));
}

// Which mode the student page runs: "browser" when the server offers the browser pipeline, this
// browser has WebAssembly SIMD and a test analysis of a width x height frame is fast enough for
// `fps`; else "server" (the camera picture goes to the server), with the reason. `forced`
// ("browser" or "server", from the page's address) skips the speed test or the browser.
async function chooseMode(fps, forced = null, width = 320, height = 240) {
  if (forced === "server") return { mode: "server", reason: "chosen in the page's address" };
  try {
    const config = await ML.api("/api/browser");
    if (!config.available) return { mode: "server", reason: config.reason };
    if (!Recognize.supported()) return { mode: "server", reason: "this browser has no WebAssembly SIMD" };
    const recognizer = await Recognize.Recognizer.create(config);
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
