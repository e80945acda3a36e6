/**
 * Draws a histogram as SVG from the server's counts and edges (no values travel to the browser).
 */
import { formatNumber } from './api';

const SVG = 'http://www.w3.org/2000/svg';

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

export function drawHistogram(
  counts: number[],
  edges: number[],
  width = 380,
  height = 150
): SVGSVGElement {
  const pad = { left: 8, right: 8, top: 8, bottom: 22 };
  const svg = el('svg', {
    class: 'ms-Histogram',
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img'
  });
  const peak = Math.max(1, ...counts);
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const barW = plotW / Math.max(1, counts.length);
  counts.forEach((count, i) => {
    const h = (count / peak) * plotH;
    const bar = el('rect', {
      class: 'ms-Histogram-bar',
      x: pad.left + i * barW + 0.5,
      y: pad.top + plotH - h,
      width: Math.max(1, barW - 1),
      height: h
    });
    const title = el('title', {});
    title.textContent = `[${formatNumber(edges[i])}, ${formatNumber(edges[i + 1])}): ${count}`;
    bar.appendChild(title);
    svg.appendChild(bar);
  });
  svg.appendChild(
    el('line', {
      class: 'ms-Histogram-axis',
      x1: pad.left,
      x2: width - pad.right,
      y1: pad.top + plotH + 0.5,
      y2: pad.top + plotH + 0.5
    })
  );
  const labels: [number, string, string][] = [
    [pad.left, 'start', formatNumber(edges[0])],
    [width - pad.right, 'end', formatNumber(edges[edges.length - 1])]
  ];
  for (const [x, anchor, text] of labels) {
    const label = el('text', {
      class: 'ms-Histogram-label',
      x,
      y: height - 6,
      'text-anchor': anchor
    });
    label.textContent = text;
    svg.appendChild(label);
  }
  return svg;
}
