// MoodLens pages: shared helpers (API calls, drawing faces and charts, sending camera frames).
// Plain browser JavaScript, no build step, no network but this server.
"use strict";

const ML = {
  meta: null,

  async api(path, options = {}) {
    const response = await fetch(path, { credentials: "same-origin", ...options });
    const type = response.headers.get("content-type") || "";
    const body = type.includes("json") ? await response.json() : await response.text();
    if (!response.ok) {
      if (response.status === 401 && !location.pathname.startsWith("/join") && !location.pathname.startsWith("/student")) {
        location.href = "/login?next=" + encodeURIComponent(location.pathname);
      }
      throw new Error((body && body.error) || response.statusText);
    }
    return body;
  },

  async loadMeta() {
    if (!ML.meta) ML.meta = await ML.api("/api/meta");
    for (const el of document.querySelectorAll("[data-privacy]")) el.textContent = ML.meta.privacy;
    return ML.meta;
  },

  color(emotion) {
    return (ML.meta && ML.meta.colors[emotion]) || "#6e6e6e";
  },

  faceLabel(face) {
    if (face.emotion) return `${face.emotion} ${Math.round(100 * (face.scores[face.emotion] || 0))}%`;
    return (face.status || "").replace("_", " ");
  },

  // Boxes, labels and score bars over a picture drawn at `scale` (frame pixels -> canvas pixels).
  drawFaces(ctx, faces, scale = 1, { bars = true, names = null } = {}) {
    const font = Math.max(11, Math.round(13 * Math.max(scale, 0.8)));
    ctx.font = `600 ${font}px system-ui, sans-serif`;
    ctx.textBaseline = "top";
    for (const face of faces) {
      const [x, y, w, h] = face.box.map((v) => v * scale);
      const color = ML.color(face.emotion);
      ctx.lineWidth = Math.max(2, Math.round(2 * scale));
      ctx.strokeStyle = color;
      ctx.strokeRect(x, y, w, h);
      let text = ML.faceLabel(face);
      if (names && face.participant) text = `${names[face.participant] || "#" + face.participant}: ${text}`;
      const tw = ctx.measureText(text).width + 8;
      const ty = y - font - 6 > 0 ? y - font - 6 : y + h + 2;
      ctx.fillStyle = color;
      ctx.fillRect(x, ty, tw, font + 6);
      ctx.fillStyle = "#000";
      ctx.fillText(text, x + 4, ty + 3);
      if (bars && face.scores && w >= 50 && ML.meta) {
        const bx = x + w + 86 < ctx.canvas.width ? x + w + 4 : Math.max(0, x - 86);
        const row = Math.max(9, Math.round(11 * Math.max(scale, 0.8)));
        ML.meta.classes.forEach((name, i) => {
          const p = face.scores[name] || 0;
          const top = y + i * row;
          ctx.fillStyle = "rgba(20,20,20,.75)";
          ctx.fillRect(bx, top, 82, row - 1);
          ctx.fillStyle = ML.color(name);
          ctx.fillRect(bx, top, 82 * p, row - 1);
          ctx.fillStyle = "#fff";
          ctx.font = `${row - 2}px system-ui, sans-serif`;
          ctx.fillText(name.slice(0, 3), bx + 2, top);
        });
        ctx.font = `600 ${font}px system-ui, sans-serif`;
      }
    }
  },

  // An HTML list of faces with their scores (what a screen reader or a test reads).
  listFaces(ul, faces) {
    ul.replaceChildren(...faces.map((face, i) => {
      const li = document.createElement("li");
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = ML.color(face.emotion);
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = ML.faceLabel(face);
      li.append(sw, `Face ${i + 1}: `, label, ` — box ${face.box.join(", ")}`);
      return li;
    }));
  },

  scoreBars(el, scores) {
    el.replaceChildren();
    el.className = "bars";
    for (const name of ML.meta.classes) {
      const p = scores[name] || 0;
      const bar = document.createElement("div");
      bar.className = "bar";
      const fill = document.createElement("span");
      fill.style.width = `${100 * p}%`;
      fill.style.background = ML.color(name);
      bar.append(fill);
      const label = document.createElement("span");
      label.textContent = name;
      const pct = document.createElement("span");
      pct.textContent = `${Math.round(100 * p)}%`;
      el.append(label, bar, pct);
    }
  },

  // The attention states (moodlens.focus): each one's colour and how a teacher reads it.
  attention: {
    facing: { color: "#1b9e8f", text: "facing the screen", short: "facing" },
    away: { color: "#c2185b", text: "looking away", short: "looking away" },
    no_face: { color: "#4b5563", text: "not in view", short: "not in view" },
    camera_off: { color: null, text: "camera off", short: "camera off" },
  },

  // a state in words; `short` for a small tile
  attentionText(state, short = false) {
    return state ? ML.attention[state][short ? "short" : "text"] : "not known yet";
  },

  percent(share) {
    return share === null || share === undefined ? "–" : `${Math.round(100 * share)}%`;
  },

  // A legend: the emotions (unless `emotions` is false), then the attention line and states.
  legend(el, { emotions = true, states = false, line = false } = {}) {
    const item = (color, text, className = "swatch") => {
      const span = document.createElement("span");
      const sw = document.createElement("span");
      sw.className = className;
      sw.style.background = color;
      span.append(sw, text);
      return span;
    };
    el.replaceChildren(...(emotions ? ML.meta.classes.map((name) => item(ML.color(name), name)) : []),
      ...(line ? [item(ML.LINE, "share facing the screen", "swatch line")] : []),
      ...(states ? ["facing", "away", "no_face"].map((s) => item(ML.attention[s].color, ML.attention[s].text)) : []));
  },

  LINE: "#1d2330",  // the attending share drawn over a timeline

  fitCanvas(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(w * ratio)) { canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio); }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return [ctx, w, h];
  },

  // The class over time (timeline: {seconds, step, shares, attending}): the emotion shares as a
  // stacked area chart, where there are any, and the share facing the screen as a line over them.
  drawTimeline(canvas, timeline, classes) {
    const [ctx, w, h] = ML.fitCanvas(canvas);
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = "#fafbfc";
    ctx.fillRect(0, 0, w, h);
    const n = timeline.seconds.length;
    const pad = 22;
    ctx.fillStyle = "#667085";
    ctx.font = "11px system-ui, sans-serif";
    if (!n) { ctx.fillText("no seconds recorded yet", 8, h / 2 - 6); return; }
    const step = timeline.step || 1;
    const t0 = timeline.seconds[0], t1 = Math.max(timeline.seconds[n - 1] + step, t0 + 1);
    const X = (s) => pad + (w - pad - 6) * (s - t0) / (t1 - t0);
    const Y = (v) => 6 + (h - 24) * (1 - v);
    // stretches of consecutive points: a second (or bin) without any record is a gap, not a line
    const runs = [];
    for (let i = 0; i < n; i++) {
      if (i && timeline.seconds[i] - timeline.seconds[i - 1] <= step) runs[runs.length - 1].push(i); else runs.push([i]);
    }
    for (const run of timeline.shares ? runs : []) {
      const below = new Map(run.map((i) => [i, 0]));
      classes.forEach((name, c) => {
        ctx.beginPath();
        for (const i of run) {
          ctx.lineTo(X(timeline.seconds[i]), Y(below.get(i) + timeline.shares[i][c]));
          ctx.lineTo(X(timeline.seconds[i] + step), Y(below.get(i) + timeline.shares[i][c]));
        }
        for (const i of [...run].reverse()) {
          ctx.lineTo(X(timeline.seconds[i] + step), Y(below.get(i)));
          ctx.lineTo(X(timeline.seconds[i]), Y(below.get(i)));
        }
        ctx.closePath();
        ctx.fillStyle = ML.color(name);
        ctx.fill();
        for (const i of run) below.set(i, below.get(i) + timeline.shares[i][c]);
      });
    }
    if (timeline.attending) {
      ML.drawShare(ctx, runs.map((run) => run.map((i) => [X(timeline.seconds[i]), X(timeline.seconds[i] + step), timeline.attending[i]])), Y);
    }
    ctx.fillStyle = "#667085";
    ctx.textBaseline = "top";
    ctx.fillText(ML.clock(t0), pad, h - 15);
    const end = ML.clock(t1);
    ctx.fillText(end, w - 6 - ctx.measureText(end).width, h - 15);
    ctx.fillText("100%", 0, 2);
    ctx.fillText("0%", 0, h - 30);
  },

  // A share (0-1) as a stepped line over runs of [x0, x1, share] bins, broken where the share is
  // unknown (no camera on); white under it so it reads over the emotion colours.
  drawShare(ctx, runs, Y) {
    for (const [color, width] of [["#fff", 4], [ML.LINE, 2]]) {
      ctx.strokeStyle = color;
      ctx.lineWidth = width;
      ctx.lineJoin = "round";
      ctx.beginPath();
      for (const run of runs) {
        let drawing = false;
        for (const [x0, x1, share] of run) {
          if (share === null) { drawing = false; continue; }
          if (drawing) ctx.lineTo(x0, Y(share)); else ctx.moveTo(x0, Y(share));
          ctx.lineTo(x1, Y(share));
          drawing = true;
        }
      }
      ctx.stroke();
    }
  },

  // Where the points of a per-second (or binned) line fall across a canvas `w` wide: the time
  // span, and each bin's width (bins are fixed stretches of time; the smallest distance between
  // two is one bin).
  timeAxis(points, span, w) {
    const t0 = span ? span[0] : points[0][0];
    const t1 = span ? span[1] : points[points.length - 1][0] + 1;
    let step = Infinity;
    for (let i = 1; i < points.length; i++) step = Math.min(step, points[i][0] - points[i - 1][0]);
    step = Number.isFinite(step) ? Math.max(1, step) : 1;
    return { x: (second) => w * (second - t0) / Math.max(1, t1 - t0), bw: Math.max(1, w * step / Math.max(1, t1 - t0)) };
  },

  // A participant's attention line: a strip per second (or bin) in the colour of its state,
  // blank where the camera was off.
  drawFocus(canvas, focus, span) {
    const [ctx, w, h] = ML.fitCanvas(canvas);
    ctx.clearRect(0, 0, w, h);
    if (!focus.length) return;
    const { x, bw } = ML.timeAxis(focus, span, w);
    for (const [second, state] of focus) {
      ctx.fillStyle = (ML.attention[state] || {}).color || "#e3e6eb";
      ctx.fillRect(x(second), 0, bw + 0.5, h);  // abutting: a state held is one band, not stripes
    }
  },

  // A participant's sparkline: one bar per second (or bin), coloured by emotion, as tall as its probability.
  drawSpark(canvas, spark, span) {
    const [ctx, w, h] = ML.fitCanvas(canvas);
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = "#eef0f3";
    ctx.fillRect(0, h - 1, w, 1);
    if (!spark.length) return;
    const { x: X, bw } = ML.timeAxis(spark, span, w);
    for (const [second, emotion, conf] of spark) {
      const x = X(second);
      if (emotion) {
        ctx.fillStyle = ML.color(emotion);
        const bh = h * (0.35 + 0.65 * conf);  // visible even when the model is unsure
        ctx.fillRect(x, h - bh, Math.max(1, bw - 0.5), bh);
      } else {
        ctx.fillStyle = "#c9ced6";
        ctx.fillRect(x, h - 2, Math.max(1, bw - 0.5), 2);
      }
    }
  },

  moodBars(el, mood) {
    ML.scoreBars(el, mood);
  },

  clock(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    const m = Math.floor(seconds / 60), s = seconds % 60;
    return m >= 60 ? `${Math.floor(m / 60)}:${String(m % 60).padStart(2, "0")}:${String(s).padStart(2, "0")}`
      : `${m}:${String(s).padStart(2, "0")}`;
  },

  wsUrl(path) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  },
};

// A WebSocket that comes back by itself after a server restart or a network drop: it reconnects
// with a growing, jittered delay (0.5 s doubling to at most 3 s, so a class of 50 does not knock
// all at once) until it is stopped or the server closes it for good (`final` codes: ended, not
// allowed, no such session). `onState(state, detail)` reports "connecting", "open" and
// "reconnecting" (detail: {delay, attempt, code}); `onClose(event)` only the final close.
class Reconnecting {
  static FINAL = [1000, 4000, 4401, 4404];

  constructor(path, { onOpen, onMessage, onState, onClose, binary = false } = {}) {
    Object.assign(this, { path, onOpen, onMessage, onState, onClose, binary });
    this.wanted = false; this.attempt = 0; this.timer = null; this.ws = null;
  }

  start() { this.wanted = true; this.attempt = 0; this.open(); }

  stop() {
    this.wanted = false;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
  }

  get ready() { return this.ws && this.ws.readyState === WebSocket.OPEN; }

  send(data) { this.ws.send(data); }

  open() {
    if (this.onState) this.onState(this.attempt ? "reconnecting" : "connecting", { attempt: this.attempt });
    const ws = this.ws = new WebSocket(ML.wsUrl(this.path));
    if (this.binary) ws.binaryType = "arraybuffer";
    ws.onopen = () => { this.attempt = 0; if (this.onState) this.onState("open", {}); if (this.onOpen) this.onOpen(); };
    ws.onmessage = (event) => { if (this.onMessage) this.onMessage(event); };
    ws.onclose = (event) => {
      if (ws !== this.ws) return;
      if (this.wanted && !Reconnecting.FINAL.includes(event.code)) {
        const delay = Math.min(3000, 500 * 2 ** this.attempt) * (0.75 + 0.5 * Math.random());
        this.attempt += 1;
        if (this.onState) this.onState("reconnecting", { delay, attempt: this.attempt, code: event.code });
        this.timer = setTimeout(() => { if (this.wanted) this.open(); }, delay);
        return;
      }
      this.wanted = false;
      if (this.onClose) this.onClose(event);
    };
  }
}

// Sends frames of a <video> (camera or screen capture) over a WebSocket, downscaled to `maxWidth`
// as JPEG, at most `fps` a second and at most `inflight` unanswered; reports each answer with the
// measured round trip. The server keeps only the newest frame, so nothing queues up. The socket
// reconnects by itself (see Reconnecting); frames are numbered afresh on each connection.
class FrameSender {
  constructor(video, path, { maxWidth = 640, fps = 10, inflight = 2, quality = 0.7, onReply, onClose, onState } = {}) {
    Object.assign(this, { video, path, maxWidth, fps, inflight, quality, onReply, onClose, onState });
    this.canvas = document.createElement("canvas");
    this.sent = 0; this.answered = 0; this.sentAt = new Map();
    this.times = []; this.latencies = []; this.running = false; this.generation = 0; this.lastMessage = null;
    this.socket = new Reconnecting(path, {
      binary: true,
      onOpen: () => {
        this.sent = 0; this.answered = 0; this.sentAt.clear();
        this.running = true;
        this.loop(++this.generation);
      },
      onMessage: (event) => this.answer(JSON.parse(event.data)),
      onState: (state, detail) => { if (state !== "open") this.running = false; if (this.onState) this.onState(state, detail); },
      onClose: (event) => { this.running = false; if (this.onClose) this.onClose(event); },
    });
  }

  start() { this.socket.start(); }

  stop() {
    this.running = false;
    this.socket.stop();
  }

  answer(reply) {
    const now = performance.now();
    const sentAt = this.sentAt.get(reply.seq);
    for (const seq of [...this.sentAt.keys()]) if (seq <= reply.seq) this.sentAt.delete(seq);
    this.answered = Math.max(this.answered, reply.seq || 0);
    if (sentAt !== undefined) this.latencies.push(now - sentAt);
    this.times.push(now);
    while (this.times.length && now - this.times[0] > 3000) this.times.shift();
    if (this.latencies.length > 20) this.latencies.shift();
    if (this.onReply) this.onReply(reply, this.stats());
  }

  stats() {
    const sorted = [...this.latencies].sort((a, b) => a - b);
    const span = this.times.length > 1 ? (this.times[this.times.length - 1] - this.times[0]) / 1000 : 0;
    return { fps: span ? (this.times.length - 1) / span : 0, latency: sorted.length ? sorted[Math.floor(sorted.length / 2)] : 0 };
  }

  async loop(generation) {
    let last = 0;
    const current = () => this.running && generation === this.generation;
    while (current()) {
      const wait = 1000 / this.fps - (performance.now() - last);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (!current()) break;
      if (this.sent - this.answered >= this.inflight || this.video.readyState < 2 || !this.video.videoWidth) {
        // wait for an answer; forget frames whose answers were dropped by the server after a while
        if (this.sentAt.size && performance.now() - Math.min(...this.sentAt.values()) > 5000) this.answered = this.sent;
        await new Promise((r) => setTimeout(r, 15));
        continue;
      }
      last = performance.now();
      await this.sendOne(current);
    }
  }

  // Draw the video into the canvas (at most maxWidth wide); its 2D context.
  draw() {
    const scale = Math.min(1, this.maxWidth / this.video.videoWidth);
    this.canvas.width = Math.round(this.video.videoWidth * scale);
    this.canvas.height = Math.round(this.video.videoHeight * scale);
    this.scale = scale;
    const ctx = this.canvas.getContext("2d");
    ctx.drawImage(this.video, 0, 0, this.canvas.width, this.canvas.height);
    return ctx;
  }

  // One message: the frame as JPEG (browser mode's ScoreSender sends scores instead).
  // `current()` says whether this loop still owns the connection.
  async sendOne(current) {
    this.draw();
    const blob = await new Promise((r) => this.canvas.toBlob(r, "image/jpeg", this.quality));
    if (!blob || !current() || !this.socket.ready) return;
    this.send(await blob.arrayBuffer());
    this.lastMessage = `a ${this.canvas.width}×${this.canvas.height} JPEG picture, ${(blob.size / 1024).toFixed(1)} KB`;
  }

  send(message) {
    this.sent += 1;
    this.sentAt.set(this.sent, performance.now());
    this.socket.send(message);
  }
}

// Draws a <video> into a canvas with the newest faces on top, every animation frame.
class Overlay {
  constructor(video, canvas, options = {}) {
    Object.assign(this, { video, canvas, options, faces: [], frameWidth: 0 });
    const draw = () => {
      if (video.videoWidth) {
        if (canvas.width !== video.videoWidth) { canvas.width = video.videoWidth; canvas.height = video.videoHeight; }
        const ctx = canvas.getContext("2d");
        ctx.drawImage(video, 0, 0);
        const scale = this.frameWidth ? canvas.width / this.frameWidth : 1;
        ML.drawFaces(ctx, this.faces, scale, this.options);
      }
      requestAnimationFrame(draw);
    };
    requestAnimationFrame(draw);
  }

  update(faces, shape) {
    this.faces = faces || [];
    if (shape) this.frameWidth = shape[1];
  }
}

function topNav() {
  const header = document.querySelector("header.top");
  if (!header) return;
  header.innerHTML = `<a class="brand" href="/">MoodLens</a><a href="/live">Live</a><a href="/upload">Upload</a>
    <a href="/sessions">Class sessions</a><span class="spacer"></span><a href="/logout">Log out</a>`;
}
topNav();
