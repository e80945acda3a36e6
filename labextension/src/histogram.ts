/**
 * Draws a histogram as SVG from the server's counts and edges (no values travel to the browser).
 *
 * The SVG is drawn in CSS pixels of the box it sits in (viewBox = its measured size, width 100%) and drawn
 * again when that box is resized, so text keeps its CSS size (>= 11 px) in a 300 px pane and at 2560 px, and
 * the number of ticks follows the room there is instead of the text shrinking. A count axis on the left, the
 * value range below.
 */
import { formatNumber } from './api';
import { formatCount } from './units';

const SVG = 'http://www.w3.org/2000/svg';
/** Font size of the axis text (CSS px; the stylesheet sets the same). */
export const LABEL_PX = 11;
const CHAR_PX = LABEL_PX * 0.62; // a monospace digit's width, for laying out labels

function el<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number>
): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) {
    node.setAttribute(k, String(v));
  }
  return node;
}

/** Round tick values inside [lo, hi], at most `n` of them (1, 2 or 5 times a power of ten apart). */
export function niceTicks(lo: number, hi: number, n: number): number[] {
  if (!(hi > lo) || n < 1) {
    return [lo];
  }
  const power = Math.pow(10, Math.floor(Math.log10((hi - lo) / n)));
  const count = (s: number) => Math.floor(hi / s + 1e-9) - Math.ceil(lo / s - 1e-9) + 1;
  // the finest round step that gives at most n ticks
  const step = [0.5, 1, 2, 5, 10, 20].map(m => m * power).find(s => count(s) <= n) ?? 50 * power;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return out;
}

function shortNumber(v: number): string {
  const a = Math.abs(v);
  if (a === 0) {
    return '0';
  }
  return a < 1e-3 || a >= 1e5 ? v.toExponential(1) : String(Number(v.toPrecision(3)));
}

/** The SVG for a box `width` × `height` CSS px. */
export function drawHistogram(
  counts: number[],
  edges: number[],
  width = 380,
  height = 160
): SVGSVGElement {
  const peak = Math.max(1, ...counts);
  const yTicks = niceTicks(0, peak, Math.max(1, Math.floor((height - 40) / 28)));
  const yLabelChars = Math.max(...yTicks.map(t => formatCount(t).length), 5);
  const pad = {
    left: Math.ceil(yLabelChars * CHAR_PX) + LABEL_PX + 12,
    right: 10,
    top: 8,
    bottom: LABEL_PX * 2 + 14
  };
  const svg = el('svg', {
    class: 'ms-Histogram',
    width: '100%',
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img'
  });
  const total = counts.reduce((a, b) => a + b, 0);
  const label = el('title', {});
  label.textContent = `histogram of ${total.toLocaleString('en-US')} values in ${counts.length} bins`;
  svg.appendChild(label);
  const plotW = Math.max(10, width - pad.left - pad.right);
  const plotH = Math.max(10, height - pad.top - pad.bottom);
  const yOf = (c: number) => pad.top + plotH - (c / Math.max(peak, yTicks[yTicks.length - 1])) * plotH;
  const text = (x: number, y: number, anchor: string, value: string, cls = 'ms-Histogram-label') => {
    const node = el('text', { class: cls, x, y, 'text-anchor': anchor });
    node.textContent = value;
    svg.appendChild(node);
    return node;
  };
  const line = (cls: string, x1: number, x2: number, y1: number, y2: number) =>
    svg.appendChild(el('line', { class: cls, x1, x2, y1, y2 }));
  // count axis: grid lines and labels
  for (const t of yTicks) {
    const y = Math.round(yOf(t)) + 0.5;
    line('ms-Histogram-grid', pad.left, pad.left + plotW, y, y);
    text(pad.left - 5, y + LABEL_PX * 0.35, 'end', formatCount(t));
  }
  const yTitle = text(0, 0, 'middle', 'count', 'ms-Histogram-label ms-Histogram-axisTitle');
  yTitle.setAttribute('transform', `translate(${LABEL_PX}, ${pad.top + plotH / 2}) rotate(-90)`);
  // bars
  const barW = plotW / Math.max(1, counts.length);
  counts.forEach((count, i) => {
    const y = yOf(count);
    const bar = el('rect', {
      class: 'ms-Histogram-bar',
      x: pad.left + i * barW + 0.5,
      y,
      width: Math.max(1, barW - 1),
      height: pad.top + plotH - y
    });
    const title = el('title', {});
    const range = `[${formatNumber(edges[i])}, ${formatNumber(edges[i + 1])})`;
    title.textContent = `${range}: ${count.toLocaleString('en-US')}`;
    bar.appendChild(title);
    svg.appendChild(bar);
  });
  const baseY = pad.top + plotH + 0.5;
  line('ms-Histogram-axis', pad.left, pad.left + plotW, baseY, baseY);
  line('ms-Histogram-axis', pad.left - 0.5, pad.left - 0.5, pad.top, baseY);
  // value axis: as many round ticks as fit, never overlapping
  const lo = edges[0];
  const hi = edges[edges.length - 1];
  const xOf = (v: number) => pad.left + ((v - lo) / (hi - lo || 1)) * plotW;
  const widest = Math.max(shortNumber(lo).length, shortNumber(hi).length, 4) * CHAR_PX + 12;
  const xTicks = niceTicks(lo, hi, Math.max(1, Math.floor(plotW / (widest * 1.6)))).filter(
    v => v >= lo && v <= hi
  );
  const labelY = baseY + LABEL_PX + 4;
  let lastRight = -Infinity;
  for (const v of xTicks) {
    const x = xOf(v);
    const value = shortNumber(v);
    const half = (value.length * CHAR_PX) / 2;
    const left = Math.max(0, Math.min(x - half, width - 2 * half));
    if (left < lastRight + 6) {
      continue;
    }
    line('ms-Histogram-axis', x, x, baseY, baseY + 4);
    text(left + half, labelY, 'middle', value);
    lastRight = left + 2 * half;
  }
  text(pad.left + plotW / 2, height - 3, 'middle', 'value', 'ms-Histogram-label ms-Histogram-axisTitle');
  return svg;
}

/** A box that keeps a histogram drawn at its own width (redrawn on resize); `dispose()` stops watching. */
export class HistogramBox {
  readonly node: HTMLDivElement;

  constructor(
    private readonly counts: number[],
    private readonly edges: number[]
  ) {
    this.node = document.createElement('div');
    this.node.className = 'ms-Detail-histogram';
    this._observer = new ResizeObserver(() => this._draw());
    this._observer.observe(this.node);
    this._draw();
  }

  dispose(): void {
    this._observer.disconnect();
  }

  private _draw(): void {
    const width = Math.floor(this.node.clientWidth);
    if (width <= 0 || width === this._width) {
      return;
    }
    this._width = width;
    const height = Math.round(Math.min(300, Math.max(160, width * 0.32)));
    this.node.replaceChildren(drawHistogram(this.counts, this.edges, width, height));
  }

  private _observer: ResizeObserver;
  private _width = 0;
}
