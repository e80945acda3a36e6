// Live training curves drawn as SVG in the browser from the arrays the kernel pushes (see live_chart.py).
// The kernel never rasterises while a run goes on; this view redraws at most once per animation frame.
const SVG_NS = "http://www.w3.org/2000/svg";
// matplotlib's default colour cycle, so the live view and the final PNG agree
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
const NON_METRIC = new Set(["epoch", "step", "loss", "lr", "steps_per_s", "wall_time", "train_loss", "eval_loss"]);
const MARKERS = ["circle", "square", "diamond", "triangle"];
// The SVG is drawn at the pixel size it is shown at, so text keeps its CSS size (11 px ticks, 12 px titles)
// however narrow the output is; a narrow chart gets fewer ticks and stacks its two panels, never smaller text.
const SIDE_BY_SIDE_MIN = 640; // px: below this the metric panel goes under the loss panel
const PANEL_HEIGHT = 230;
const TICK_FONT = 11; // px, as in live_chart.css
const MARGIN = { right: 12, top: 24, bottom: 38 };
const X_TICK_SPACING = 80; // px per x tick label at most
const Y_TICK_SPACING = 42;

/** A float32 column from a synced binary trait (DataView / ArrayBuffer) or a plain list (saved JSON state). */
function column(value) {
  if (!value) return new Float32Array(0);
  if (value instanceof DataView) {
    const copy = value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength);
    return new Float32Array(copy);
  }
  if (value instanceof ArrayBuffer) return new Float32Array(value.slice(0));
  if (ArrayBuffer.isView(value)) return new Float32Array(value);
  return Float32Array.from(value, (v) => (v === null ? NaN : v));
}

/** Exponential moving average with bias correction; NaN stays NaN (same as ms_notebook.runs.plotting.ema). */
export function ema(values, smoothing) {
  const out = new Float64Array(values.length);
  let avg = 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) {
      out[i] = NaN;
      continue;
    }
    n += 1;
    avg = smoothing * avg + (1 - smoothing) * v;
    out[i] = avg / (1 - smoothing ** n);
  }
  return out;
}

/** Round numbers covering [lo, hi]: about `count` ticks at 1, 2 or 5 times a power of ten. */
export function niceTicks(lo, hi, count = 5, integer = false) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / Math.max(count - 1, 1);
  const power = 10 ** Math.floor(Math.log10(raw));
  // the round step whose number of intervals is closest to count - 1
  const candidates = [1, 2, 2.5, 5, 10].map((m) => m * power).filter((s) => !integer || s >= 1);
  let step = candidates.reduce((best, s) =>
    Math.abs((hi - lo) / s - (count - 1)) < Math.abs((hi - lo) / best - (count - 1)) ? s : best, candidates[0] ?? 1);
  if (integer) step = Math.max(1, Math.round(step));
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

/** Ticks on a log axis at round values: powers of ten, else 1-3, 1-2-5 or 1..9 times 10^k, else round
 *  linear values (never 10^0.5 = 3.162). `lo`/`hi` are log10 of the range; ticks are returned as log10. */
export function logTicks(lo, hi, count = 5) {
  const within = (t) => t >= lo - 1e-9 && t <= hi + 1e-9;
  const decades = [];
  for (let k = Math.ceil(lo - 1e-9); k <= hi + 1e-9; k++) decades.push(k);
  if (decades.length > count) {
    const stride = Math.ceil(decades.length / count);
    return decades.filter((k) => k % stride === 0);
  }
  let best = decades;
  if (best.length >= Math.min(3, count)) return best;
  for (const mantissas of [[1, 3], [1, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]]) {
    const ticks = [];
    for (let k = Math.floor(lo) - 1; k <= Math.ceil(hi); k++)
      for (const m of mantissas) if (within(Math.log10(m) + k)) ticks.push(Math.log10(m) + k);
    if (ticks.length > count + 1) break; // denser sets only add more
    if (ticks.length > best.length) best = ticks;
    if (best.length >= Math.min(3, count)) return best;
  }
  const linear = niceTicks(10 ** lo, 10 ** hi, count).filter((t) => t > 0 && within(Math.log10(t)));
  return linear.length > best.length ? linear.map(Math.log10) : best;
}

function format(value) {
  if (!Number.isFinite(value)) return "–";
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e5)) return value.toExponential(1);
  return String(+value.toPrecision(4));
}

/** Ask the Jupyter server to interrupt a kernel (what JupyterLab's ■ does): the only message a kernel busy with a
 *  foreground cell reads at once. The kernel's loop turns it into a Stop at the next step boundary. */
function interruptKernel(kernelId) {
  try {
    const node = document.getElementById("jupyter-config-data");
    const config = node ? JSON.parse(node.textContent) : {};
    const base = (config.baseUrl || "/").replace(/\/?$/, "/");
    const headers = {};
    const xsrf = document.cookie.match(/(?:^|; )_xsrf=([^;]*)/);
    if (xsrf) headers["X-XSRFToken"] = decodeURIComponent(xsrf[1]);
    if (config.token) headers.Authorization = `token ${config.token}`;
    fetch(`${base}api/kernels/${encodeURIComponent(kernelId)}/interrupt`,
      { method: "POST", headers, credentials: "same-origin" }).catch(() => {});
  } catch (error) {
    // not in a Jupyter page (an export, VS Code): the comm message alone reaches an idle kernel
  }
}

function el(tag, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (parent) parent.appendChild(node);
  return node;
}

/** SVG path through (xs[i], ys[i]); non-finite values break the line. */
function pathData(xs, ys, sx, sy) {
  let d = "";
  let pen = false;
  for (let i = 0; i < xs.length; i++) {
    const y = ys[i];
    if (!Number.isFinite(y) || !Number.isFinite(xs[i])) {
      pen = false;
      continue;
    }
    d += `${pen ? "L" : "M"}${sx(xs[i]).toFixed(1)},${sy(y).toFixed(1)}`;
    pen = true;
  }
  return d;
}

function marker(kind, x, y, color, parent) {
  const s = 3.2;
  if (kind === "square") return el("rect", { x: x - s, y: y - s, width: 2 * s, height: 2 * s, fill: color }, parent);
  if (kind === "diamond")
    return el("path", { d: `M${x},${y - s - 1}L${x + s + 1},${y}L${x},${y + s + 1}L${x - s - 1},${y}Z`, fill: color }, parent);
  if (kind === "triangle")
    return el("path", { d: `M${x},${y - s - 1}L${x + s + 1},${y + s}L${x - s - 1},${y + s}Z`, fill: color }, parent);
  return el("circle", { cx: x, cy: y, r: s, fill: color }, parent);
}

/** The runs to draw: overlays first (dashed), the current run last (solid), colours in that order. */
function runsOf(model) {
  const overlays = (model.get("overlays") || []).map((run) => ({
    label: run.label,
    steps: column(run.steps),
    loss: column(run.loss),
    epochs: run.epochs || [],
    current: false
  }));
  const current = {
    label: model.get("label"),
    steps: column(model.get("steps")),
    loss: column(model.get("loss")),
    epochs: model.get("epochs") || [],
    current: true
  };
  return [...overlays, current].map((run, index) => ({ ...run, color: PALETTE[index % PALETTE.length] }));
}

function metricNames(runs) {
  const names = new Set();
  for (const run of runs)
    for (const epoch of run.epochs)
      for (const [key, value] of Object.entries(epoch)) if (!NON_METRIC.has(key) && typeof value === "number") names.add(key);
  return [...names].sort();
}

function extent(values, log) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (!Number.isFinite(v) || (log && v <= 0)) continue;
    const t = log ? Math.log10(v) : v;
    if (t < lo) lo = t;
    if (t > hi) hi = t;
  }
  if (lo === Infinity) return null;
  if (hi - lo < 1e-12) {
    const pad = Math.abs(lo) * 0.05 || 0.05;
    return [lo - pad, hi + pad];
  }
  const pad = (hi - lo) * 0.05;
  return [lo - pad, hi + pad];
}

/** Rough width of a tick label in px (digits at 11 px): enough to size the left margin without measuring. */
function labelWidth(text) {
  return text.length * 6.6 + 4;
}

/** One panel: frame, grid, ticks, axis labels and the series drawn by `draw(sx, sy, g)`. Returns the scales.
 *  `axes` = {x: label, y: label, integerX: bool}. Tick counts follow the panel's pixel size. */
function panel(svg, box, xDomain, yDomain, log, title, axes, draw) {
  const g = el("g", { class: "ms-panel" }, svg);
  const [x0, x1] = xDomain;
  const [y0, y1] = yDomain;
  const sx = (x) => box.x + ((x - x0) / (x1 - x0 || 1)) * box.w;
  const sy = (y) => box.y + box.h - (((log ? Math.log10(y) : y) - y0) / (y1 - y0 || 1)) * box.h;
  el("rect", { class: "ms-frame", x: box.x, y: box.y, width: box.w, height: box.h }, g);
  const xCount = Math.max(2, Math.min(8, Math.floor(box.w / X_TICK_SPACING)));
  const yCount = Math.max(2, Math.min(6, Math.floor(box.h / Y_TICK_SPACING)));
  for (const t of niceTicks(x0, x1, xCount, axes.integerX)) {
    const x = sx(t);
    el("line", { class: "ms-grid", x1: x, x2: x, y1: box.y, y2: box.y + box.h }, g);
    el("text", { class: "ms-tick", x, y: box.y + box.h + TICK_FONT + 3, "text-anchor": "middle" }, g)
      .textContent = format(t);
  }
  for (const t of log ? logTicks(y0, y1, yCount) : niceTicks(y0, y1, yCount)) {
    const y = box.y + box.h - ((t - y0) / (y1 - y0 || 1)) * box.h;
    el("line", { class: "ms-grid", x1: box.x, x2: box.x + box.w, y1: y, y2: y }, g);
    el("text", { class: "ms-tick", x: box.x - 4, y: y + 4, "text-anchor": "end" }, g).textContent = format(
      log ? 10 ** t : t
    );
  }
  el("text", { class: "ms-axis-label", x: box.x + box.w / 2, y: box.y + box.h + 2 * TICK_FONT + 9,
    "text-anchor": "middle" }, g).textContent = axes.x;
  const yLabel = el("text", { class: "ms-axis-label", x: 0, y: 0, "text-anchor": "middle",
    transform: `translate(${box.x - box.left + TICK_FONT}, ${box.y + box.h / 2}) rotate(-90)` }, g);
  yLabel.textContent = axes.y;
  el("text", { class: "ms-title", x: box.x + box.w / 2, y: box.y - 8, "text-anchor": "middle" }, g).textContent = title;
  const clipId = `ms-clip-${Math.random().toString(36).slice(2)}`;
  const clip = el("clipPath", { id: clipId }, g);
  el("rect", { x: box.x, y: box.y, width: box.w, height: box.h }, clip);
  const plot = el("g", { "clip-path": `url(#${clipId})` }, g);
  draw(sx, sy, plot);
  return { sx, sy };
}

/** The pixel box of a panel: `left` leaves room for the y label and the widest tick label. */
function box(x, y, w, h, yTicks) {
  const left = TICK_FONT + 8 + Math.max(...yTicks.map(labelWidth), 20);
  return { x: x + left, y: y + MARGIN.top, w: Math.max(w - left - MARGIN.right, 40),
    h: Math.max(h - MARGIN.top - MARGIN.bottom, 40), left };
}

function render({ model, el: root }) {
  root.classList.add("ms-live-chart");
  const bar = document.createElement("div");
  bar.className = "ms-live-chart-bar";
  const status = document.createElement("span");
  status.className = "ms-live-chart-status";
  const readout = document.createElement("span");
  readout.className = "ms-live-chart-readout";
  const smoothLabel = document.createElement("label");
  smoothLabel.textContent = "smoothing ";
  const smooth = document.createElement("input");
  smooth.type = "range";
  smooth.min = "0";
  smooth.max = "0.95";
  smooth.step = "0.05";
  smooth.className = "ms-live-chart-smoothing";
  const smoothValue = document.createElement("span");
  smoothLabel.append(smooth, smoothValue);
  const logLabel = document.createElement("label");
  const log = document.createElement("input");
  log.type = "checkbox";
  log.className = "ms-live-chart-log";
  logLabel.append(log, document.createTextNode(" log scale"));
  bar.append(status, readout, smoothLabel, logLabel);
  // a standalone loop's run line: progress bar, progress text, Stop (a Dashboard shows its own). Its height is
  // reserved while the run is live so the chart does not jump when Stop appears or goes
  const runLine = document.createElement("div");
  runLine.className = "ms-live-chart-run";
  const meter = document.createElement("progress");
  meter.className = "ms-live-chart-meter";
  meter.max = 1;
  const progressText = document.createElement("span");
  progressText.className = "ms-live-chart-progress";
  const stop = document.createElement("button");
  stop.className = "ms-live-chart-stop";
  stop.type = "button";
  stop.textContent = "■ Stop";
  stop.title = "Stop after the current step (the history and figure are kept)";
  stop.addEventListener("click", () => {
    stop.disabled = true;
    stop.textContent = "stopping…";
    model.send({ event: "stop" });
    const kernel = model.get("interrupt_kernel");
    if (kernel) interruptKernel(kernel);
  });
  runLine.append(meter, progressText, stop);
  const notice = document.createElement("div");
  notice.className = "ms-live-chart-notice";
  const legend = document.createElement("div");
  legend.className = "ms-live-chart-legend";
  const svg = el("svg", { class: "ms-live-chart-svg", role: "img" });
  // a chart inside a Dashboard or a job's view: they show progress and Stop themselves (no second Stop button)
  if (model.get("standalone")) root.append(bar, runLine, notice, legend, svg);
  else root.append(bar, notice, legend, svg);

  function legendItem(swatch, text, cls = "") {
    const item = document.createElement("span");
    item.className = `ms-legend-item ${cls}`;
    item.append(swatch, document.createTextNode(text));
    legend.appendChild(item);
  }

  /** Legend above the plots (never over the data): one entry per run, eval loss, the marker of each metric. */
  function drawLegend(runs, names, evalLoss) {
    legend.replaceChildren();
    for (const run of runs) {
      if (!run.steps.length && !run.epochs.length) continue;
      const swatch = el("svg", { width: 22, height: 8, class: "ms-legend-swatch" });
      el("line", { x1: 1, x2: 21, y1: 4, y2: 4, stroke: run.color, "stroke-width": run.current ? 2.4 : 1.6,
        "stroke-dasharray": run.current ? "none" : "5 3" }, swatch);
      legendItem(swatch, run.current ? run.label : `${run.label} (earlier)`, run.current ? "ms-legend-current" : "");
    }
    if (evalLoss) {
      const swatch = el("svg", { width: 10, height: 10, class: "ms-legend-swatch" });
      marker("circle", 5, 5, "currentColor", swatch);
      legendItem(swatch, "eval loss (per epoch)", "ms-legend-metric ms-legend-eval-loss");
    }
    names.forEach((name, m) => {
      const swatch = el("svg", { width: 10, height: 10, class: "ms-legend-swatch" });
      marker(MARKERS[m % MARKERS.length], 5, 5, "currentColor", swatch);
      legendItem(swatch, name.replace(/_/g, " "), "ms-legend-metric");
    });
  }

  let frame = 0;
  let lossScale = null; // {sx, sy, run, smoothed, box} of the last drawing, for the readout
  let width = 0; // the SVG's width in CSS px (the chart's own width)
  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(draw);
  };

  function draw() {
    frame = 0;
    const shown = root.clientWidth - 8; // 0 while in a hidden tab: keep the last size, redraw when shown
    if (shown >= 120) width = Math.floor(shown);
    else if (!width) width = 720;
    const smoothing = model.get("smoothing");
    const logY = model.get("log_y");
    smooth.value = String(smoothing);
    smoothValue.textContent = ` ${smoothing.toFixed(2)}`;
    log.checked = logY;
    const runs = runsOf(model);
    const current = runs[runs.length - 1];
    const n = current.steps.length;
    const runState = model.get("status");
    const state = runState || (model.get("live") ? "live" : n ? "finished" : "waiting for the first step");
    const progressLine = model.get("progress");
    const stoppable = model.get("stoppable");
    runLine.style.display = progressLine || stoppable ? "" : "none";
    progressText.textContent = progressLine;
    meter.value = Math.max(0, Math.min(1, model.get("fraction") || 0));
    meter.style.visibility = model.get("fraction") > 0 ? "visible" : "hidden";
    stop.style.visibility = stoppable ? "visible" : "hidden";
    if (runState !== "stopping") {
      stop.disabled = !stoppable;
      stop.textContent = "■ Stop";
    } else {
      stop.disabled = true;
      stop.textContent = "stopping…";
    }
    notice.textContent = model.get("notice") || "";
    notice.style.display = notice.textContent ? "" : "none";
    status.textContent = n
      ? `${current.label} · ${state} · step ${current.steps[n - 1]} · loss ${format(current.loss[n - 1])}`
      : `${current.label} · ${state}`;
    svg.replaceChildren();
    svg.setAttribute("aria-label", status.textContent);

    const names = metricNames(runs);
    const split = names.length > 0;
    const sideBySide = split && width >= SIDE_BY_SIDE_MIN;
    const panelW = sideBySide ? width / 2 : width;
    const height = split && !sideBySide ? 2 * PANEL_HEIGHT : PANEL_HEIGHT;
    svg.setAttribute("width", String(width));
    svg.setAttribute("height", String(height));
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);

    const allSteps = runs.flatMap((run) => [...run.steps, ...run.epochs.map((e) => e.step)]);
    const xDomain = extent(allSteps, false) ?? [0, 1];
    xDomain[0] = Math.max(xDomain[0], 0);
    const smoothed = runs.map((run) => (smoothing > 0 ? ema(run.loss, smoothing) : run.loss));
    const lossValues = runs.flatMap((run, i) => [...smoothed[i], ...(run.current && smoothing > 0 ? run.loss : []),
      ...run.epochs.map((e) => e.eval_loss ?? NaN)]);
    const yLoss = extent(lossValues, logY) ?? [0, 1];
    const evalLoss = runs.some((run) => run.epochs.some((e) => Number.isFinite(e.eval_loss)));
    drawLegend(runs, names, evalLoss);
    const lossTicks = (logY ? logTicks(yLoss[0], yLoss[1]) : niceTicks(yLoss[0], yLoss[1])).map((t) =>
      format(logY ? 10 ** t : t));
    const lossBox = box(0, 0, panelW, PANEL_HEIGHT, lossTicks);
    const title = `loss per step${smoothing > 0 ? ` (EMA ${smoothing.toFixed(2)})` : ""}`;
    const axes = { x: "step", y: "loss", integerX: true };
    const scales = panel(svg, lossBox, xDomain, yLoss, logY, title, axes, (sx, sy, g) => {
      runs.forEach((run, i) => {
        const cls = `ms-series ms-series-loss ${run.current ? "ms-series-current" : "ms-series-overlay"}`;
        if (run.current && smoothing > 0)
          el("path", { class: "ms-series-raw", d: pathData(run.steps, run.loss, sx, sy), stroke: run.color }, g);
        el("path", { class: cls, d: pathData(run.steps, smoothed[i], sx, sy), stroke: run.color,
          "stroke-dasharray": run.current ? "none" : "5 3" }, g);
        for (const e of run.epochs)
          if (Number.isFinite(e.eval_loss) && (!logY || e.eval_loss > 0)) {
            const dot = marker("circle", sx(e.step), sy(e.eval_loss), run.color, g);
            dot.classList.add("ms-eval-loss");
          }
      });
    });
    lossScale = { ...scales, run: current, smoothed: smoothed[smoothed.length - 1], box: lossBox };

    if (split) {
      const values = runs.flatMap((run) => run.epochs.flatMap((e) => names.map((name) => e[name] ?? NaN)));
      const yDomain = extent(values, false) ?? [0, 1];
      const epochs = runs.flatMap((run) => run.epochs.map((e) => e.epoch));
      const eDomain = extent(epochs, false) ?? [0, 1];
      eDomain[0] = Math.max(eDomain[0], 0);
      const ticks = niceTicks(yDomain[0], yDomain[1]).map(format);
      const metricBox = sideBySide ? box(panelW, 0, panelW, PANEL_HEIGHT, ticks)
        : box(0, PANEL_HEIGHT, width, PANEL_HEIGHT, ticks);
      const yName = names.length === 1 ? names[0].replace(/_/g, " ") : "metric";
      panel(svg, metricBox, eDomain, yDomain, false, "epoch metrics", { x: "epoch", y: yName, integerX: true },
        (sx, sy, g) => {
          for (const run of runs)
            names.forEach((name, m) => {
              const points = run.epochs.filter((e) => Number.isFinite(e[name]));
              if (!points.length) return;
              el("path", { class: `ms-series ms-series-metric ${run.current ? "ms-series-current" : "ms-series-overlay"}`,
                d: pathData(points.map((e) => e.epoch), points.map((e) => e[name]), sx, sy), stroke: run.color,
                "stroke-dasharray": run.current ? "none" : "5 3", "data-metric": name }, g);
              for (const e of points) marker(MARKERS[m % MARKERS.length], sx(e.epoch), sy(e[name]), run.color, g);
            });
        });
    }
  }

  // the readout: step and loss of the current run under the pointer
  svg.addEventListener("mousemove", (event) => {
    if (!lossScale || !lossScale.run.steps.length) return;
    const point = svg.createSVGPoint();
    point.x = event.clientX;
    point.y = event.clientY;
    const local = point.matrixTransform(svg.getScreenCTM().inverse());
    const { box: area, run, smoothed } = lossScale;
    if (local.x < area.x || local.x > area.x + area.w || local.y > area.y + area.h + MARGIN.bottom) {
      readout.textContent = "";
      return;
    }
    const steps = run.steps;
    const target = lossScale.sx(steps[0]) <= local.x ? local.x : lossScale.sx(steps[0]);
    let lo = 0;
    let hi = steps.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (lossScale.sx(steps[mid]) < target) lo = mid + 1;
      else hi = mid;
    }
    readout.textContent = `step ${steps[lo]}: loss ${format(run.loss[lo])}` +
      (smoothed !== run.loss ? ` (smoothed ${format(smoothed[lo])})` : "");
  });
  svg.addEventListener("mouseleave", () => (readout.textContent = ""));

  smooth.addEventListener("input", () => {
    model.set("smoothing", Number(smooth.value));
    model.save_changes();
  });
  log.addEventListener("change", () => {
    model.set("log_y", log.checked);
    model.save_changes();
  });
  const names = ["steps", "loss", "epochs", "overlays", "label", "live", "smoothing", "log_y", "status", "progress",
    "fraction", "stoppable", "notice"];
  for (const name of names) model.on(`change:${name}`, schedule);
  // redraw at the new size when the output area, the side panel or the window changes width. Compared with
  // the width of the last drawing, not of the last callback: a drawing made while the tab was hidden (the
  // default width) is redrawn when the tab is shown again at the size it had before
  const resize = new ResizeObserver(() => {
    const shown = root.clientWidth - 8;
    if (shown >= 120 && Math.floor(shown) !== width) schedule();
  });
  resize.observe(root);
  draw();
  return () => {
    for (const name of names) model.off(`change:${name}`, schedule);
    resize.disconnect();
    if (frame) cancelAnimationFrame(frame);
  };
}

export default { render };
