/**
 * A dependency-free SVG line chart: one panel per policy, one line per server, the mean and 1.2x
 * the mean dashed, an optional marker (the shock). Deterministic text output, so the committed
 * file only changes when the figures do.
 */

export interface Panel {
  readonly title: string;
  readonly subtitle: string;
  /** x value of each point (minutes). */
  readonly x: readonly number[];
  /** One line per server: y values (points/s), NaN where the server is out of service. */
  readonly lines: readonly (readonly number[])[];
  /** Lines drawn thicker (e.g. the servers the shock landed on). */
  readonly emphasised: readonly number[];
}

export interface ChartOptions {
  readonly title: string;
  readonly caption: string;
  readonly panels: readonly Panel[];
  readonly columns: number;
  /** Vertical marker position on the x axis and its label. */
  readonly marker?: { readonly x: number; readonly label: string };
  readonly xLabel: string;
  readonly yLabel: string;
}

const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac', '#1f77b4', '#d62728'];

const PANEL_W = 480;
const PANEL_H = 230;
const MARGIN = { left: 56, right: 16, top: 42, bottom: 40 };
const HEADER = 64;

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmt(v: number): string {
  return (Math.round(v * 10) / 10).toString();
}

/** Round tick step (1, 2 or 5 times a power of ten) giving about `count` ticks over `span`. */
function tickStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const unit = raw / power;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
}

export function renderChart(options: ChartOptions): string {
  const { panels, columns } = options;
  const rows = Math.ceil(panels.length / columns);
  const width = columns * PANEL_W;
  const height = HEADER + rows * PANEL_H + 28;
  const xs = panels.flatMap((p) => p.x);
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs);
  const yMax = Math.max(...panels.flatMap((p) => p.lines.flatMap((l) => l.filter((v) => Number.isFinite(v)))), 1);
  const yStep = tickStep(yMax, 5);
  const yTop = Math.ceil(yMax / yStep) * yStep;
  const xStep = tickStep(xMax - xMin, 6);

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`);
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${width / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${esc(options.title)}</text>`);
  out.push(`<text x="${width / 2}" y="44" text-anchor="middle" font-size="12" fill="#444">${esc(options.caption)}</text>`);

  panels.forEach((panel, index) => {
    const ox = (index % columns) * PANEL_W;
    const oy = HEADER + Math.floor(index / columns) * PANEL_H;
    const plotW = PANEL_W - MARGIN.left - MARGIN.right;
    const plotH = PANEL_H - MARGIN.top - MARGIN.bottom;
    const px = (x: number): number => ox + MARGIN.left + ((x - xMin) / (xMax - xMin || 1)) * plotW;
    const py = (y: number): number => oy + MARGIN.top + plotH - (y / yTop) * plotH;
    out.push(`<g>`);
    out.push(`<text x="${fmt(ox + MARGIN.left)}" y="${fmt(oy + 18)}" font-size="13" font-weight="bold">${esc(panel.title)}</text>`);
    out.push(`<text x="${fmt(ox + MARGIN.left)}" y="${fmt(oy + 32)}" fill="#555">${esc(panel.subtitle)}</text>`);
    out.push(`<rect x="${fmt(ox + MARGIN.left)}" y="${fmt(oy + MARGIN.top)}" width="${fmt(plotW)}" height="${fmt(plotH)}" fill="#fafafa" stroke="#ccc"/>`);
    for (let y = 0; y <= yTop + 1e-9; y += yStep) {
      out.push(`<line x1="${fmt(px(xMin))}" x2="${fmt(px(xMax))}" y1="${fmt(py(y))}" y2="${fmt(py(y))}" stroke="#e6e6e6"/>`);
      out.push(`<text x="${fmt(px(xMin) - 4)}" y="${fmt(py(y) + 4)}" text-anchor="end" fill="#555">${fmt(y / 1000)}k</text>`);
    }
    for (let x = Math.ceil(xMin / xStep) * xStep; x <= xMax + 1e-9; x += xStep) {
      out.push(`<text x="${fmt(px(x))}" y="${fmt(oy + MARGIN.top + plotH + 14)}" text-anchor="middle" fill="#555">${fmt(x)}</text>`);
    }
    out.push(`<text x="${fmt(ox + MARGIN.left + plotW / 2)}" y="${fmt(oy + PANEL_H - 8)}" text-anchor="middle" fill="#555">${esc(options.xLabel)}</text>`);
    if (index % columns === 0) {
      out.push(`<text transform="translate(${fmt(ox + 14)} ${fmt(oy + MARGIN.top + plotH / 2)}) rotate(-90)" text-anchor="middle" fill="#555">${esc(options.yLabel)}</text>`);
    }
    if (options.marker !== undefined) {
      const mx = px(options.marker.x);
      out.push(`<line x1="${fmt(mx)}" x2="${fmt(mx)}" y1="${fmt(oy + MARGIN.top)}" y2="${fmt(oy + MARGIN.top + plotH)}" stroke="#333" stroke-dasharray="2 3"/>`);
      out.push(`<text x="${fmt(mx + 3)}" y="${fmt(oy + MARGIN.top + 11)}" fill="#333">${esc(options.marker.label)}</text>`);
    }
    panel.lines.forEach((line, s) => {
      const d = pathOf(panel.x, line, px, py);
      const thick = panel.emphasised.includes(s);
      if (d !== '') out.push(`<path d="${d}" fill="none" stroke="${PALETTE[s % PALETTE.length] ?? '#000'}" stroke-width="${thick ? 2.2 : 1}" stroke-opacity="${thick ? 1 : 0.8}"/>`);
    });
    const meanLine = panel.x.map((_, k) => {
      const vals = panel.lines.map((l) => l[k] ?? NaN).filter((v) => Number.isFinite(v));
      return vals.length === 0 ? NaN : vals.reduce((a, b) => a + b, 0) / vals.length;
    });
    out.push(`<path d="${pathOf(panel.x, meanLine, px, py)}" fill="none" stroke="#000" stroke-width="1.4" stroke-dasharray="6 3"/>`);
    out.push(`<path d="${pathOf(panel.x, meanLine.map((v) => v * 1.2), px, py)}" fill="none" stroke="#777" stroke-width="1" stroke-dasharray="2 2"/>`);
    out.push(`</g>`);
  });
  out.push(`<text x="${width / 2}" y="${height - 8}" text-anchor="middle" fill="#444">thin lines: servers · thick: the servers the shock landed on · dashed black: mean load · dotted grey: 1.2x the mean</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function pathOf(x: readonly number[], y: readonly number[], px: (v: number) => number, py: (v: number) => number): string {
  const parts: string[] = [];
  let pen = false;
  y.forEach((v, k) => {
    const xv = x[k];
    if (!Number.isFinite(v) || xv === undefined) {
      pen = false;
      return;
    }
    parts.push(`${pen ? 'L' : 'M'}${fmt(px(xv))} ${fmt(py(v))}`);
    pen = true;
  });
  return parts.join('');
}
