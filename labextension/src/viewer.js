// Read-only viewer of a saved analysis (*.llmroof.json = Result.to_dict() as JSON): headline
// figures, a log–log roofline of every operator under the device's roofs, the memory breakdown
// against the capacity, and the per-operator tables of prefill and decode. No kernel.
//
// Security: the file is data from anywhere (a model name can hold markup). Every text goes in
// with textContent / createTextNode, attributes only take numbers or our own class names; no
// innerHTML, no href from data.
import { Widget } from '@lumino/widgets';

import {
  fmtBytes,
  fmtDecade,
  fmtFlops,
  fmtIntensity,
  fmtNumber,
  fmtPercent,
  fmtRate,
  fmtTime,
  isNum,
  OP_COLUMNS
} from './format.js';

const SVG_NS = 'http://www.w3.org/2000/svg';
const PHASES = ['prefill', 'decode'];

/** Element helper: strings become text nodes (never parsed as HTML). */
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function s(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

function setAttrs(node, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') node.setAttribute('class', v);
    else if (k === 'dataset') for (const [dk, dv] of Object.entries(v)) node.dataset[dk] = String(dv);
    else if (k === 'style') for (const [sk, sv] of Object.entries(v)) node.style.setProperty(sk, String(sv));
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, String(v));
  }
}

function append(node, children) {
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    node.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

const str = (x, fallback = '–') => (x == null ? fallback : String(x));
const obj = x => (x && typeof x === 'object' && !Array.isArray(x) ? x : {});
const num = x => (isNum(x) ? x : NaN);

function bitsLabel(settings) {
  const b = k => str(settings[k], '?');
  return `W${b('w_bits')}A${b('a_bits')}KV${b('kv_bits')}`;
}

// -- headline ---------------------------------------------------------------------------------------

function figure(key, label, value, title, extra) {
  return h(
    'div',
    { class: `lr-doc-figure${extra ? ' ' + extra : ''}`, dataset: { key }, title },
    h('span', { class: 'lr-doc-figure-label' }, label),
    h('span', { class: 'lr-doc-figure-value' }, value)
  );
}

/** What the times are, from settings.efficiency: "roofline" lower bounds, "calibrated" estimates,
 * or roofline times at given shares of the peaks ("custom"). */
function efficiencyMode(st) {
  const e = st.efficiency;
  if (e === 'calibrated') return 'calibrated';
  if (e && typeof e === 'object' && Object.values(e).some(v => v !== 1)) return 'custom';
  return 'roofline';
}

const TIME_WORD = { roofline: 'a lower bound', custom: 'a lower bound at the given efficiency shares', calibrated: 'a calibrated estimate' };
const RATE_WORD = { roofline: 'an upper bound', custom: 'an upper bound at the given efficiency shares', calibrated: 'a calibrated estimate' };
const MODE_NOTE = {
  roofline: 'Roofline times are lower bounds: every operator at the peak compute rate or the peak bandwidth of the device.',
  custom: 'Roofline times at the given shares of the peaks (settings.efficiency): lower bounds for kernels that reach those shares.',
  calibrated: 'Calibrated estimates (achievable bandwidth, GEMM efficiency, launch overheads of real kernels), not lower bounds.'
};

function renderHeadline(d) {
  const model = obj(d.model);
  const hw = obj(d.hardware);
  const st = obj(d.settings);
  const gen = obj(d.generation);
  const mem = obj(d.memory);
  const fits = mem.fits === true;
  const mode = efficiencyMode(st);
  const tw = TIME_WORD[mode];
  const rw = RATE_WORD[mode];
  const devices = isNum(gen.devices) ? gen.devices : 1;
  const subtitle = [
    `batch ${fmtNumber(num(st.batch_size))}`,
    `prompt ${fmtNumber(num(st.prompt_len))}`,
    `generate ${fmtNumber(num(st.gen_len))}`,
    bitsLabel(st),
    st.efficiency && typeof st.efficiency === 'string' ? `efficiency: ${st.efficiency}` : null,
    obj(d.roofs).mode ? `mode: ${str(obj(d.roofs).mode)}` : null
  ]
    .filter(Boolean)
    .join(' · ');
  return h(
    'div',
    { class: 'lr-doc-headline' },
    h(
      'div',
      { class: 'lr-doc-title' },
      h('bdi', { class: 'lr-doc-model-name', dir: 'auto' }, str(model.name ?? st.model, 'unknown model')),
      h('span', { class: 'lr-doc-on' }, ' on '),
      h('bdi', { class: 'lr-doc-hardware-name', dir: 'auto' }, str(hw.name ?? st.hardware, 'unknown device'))
    ),
    h('div', { class: 'lr-doc-subtitle' }, subtitle),
    h(
      'div',
      { class: 'lr-doc-figures' },
      figure('ttft', 'TTFT', fmtTime(num(gen.ttft_s)), `Time to first token = the prefill time (${tw}).`),
      figure('tpot', 'TPOT', fmtTime(num(gen.tpot_s)), `Time per output token after the first (${tw}).`),
      figure('tokens_per_s', 'tokens/s, one sequence', fmtRate(num(gen.tokens_per_s), ''), `Generated tokens per second for one sequence, end to end (${rw}).`),
      figure('throughput', 'throughput, whole batch', `${fmtRate(num(gen.throughput_tokens_per_s), '')} tok/s`, `Generated tokens per second for the whole batch: every sequence together, all devices (${rw}).`),
      devices > 1 && isNum(gen.throughput_per_device_tokens_per_s)
        ? figure('throughput_per_device', 'per device', `${fmtRate(gen.throughput_per_device_tokens_per_s, '')} tok/s`, `The whole batch's throughput divided by the ${fmtNumber(devices)} devices (${rw}).`)
        : null,
      figure('e2e', 'end to end', fmtTime(num(gen.e2e_s)), `TTFT + every later decode step (${tw}).`),
      figure('memory', devices > 1 ? 'memory per device (fits check)' : 'memory (fits check)', `${fmtBytes(num(mem.total_bytes))} / ${fmtBytes(num(mem.capacity_bytes))}`, "Weights + the KV cache of the last step + the larger of the prefill and decode activations, against the device's capacity: what \"fits\" and \"max batch\" use."),
      figure('fits', 'fits', fits ? 'yes' : 'no', fits ? 'Fits in device memory.' : 'Does not fit in device memory.', fits ? 'lr-doc-fits' : 'lr-doc-nofit'),
      isNum(mem.max_batch_size)
        ? figure('max_batch', 'max batch', fmtNumber(mem.max_batch_size), 'Largest batch size whose memory fits on the device.')
        : null
    ),
    h('div', { class: 'lr-doc-note', dataset: { mode } }, MODE_NOTE[mode])
  );
}

// -- roofline (log–log SVG) -------------------------------------------------------------------------

const W = 640;
const H = 360;
const M = { left: 94, right: 140, top: 14, bottom: 46 };

const MAX_TICKS = 40; // decades labelled at most: beyond, every k-th decade (extreme values stay fast)
const AXIS_LIMIT = 1e300; // axis ends clamped to [1/AXIS_LIMIT, AXIS_LIMIT]: their logarithms stay finite

function clampAxis(v) {
  return Math.min(Math.max(Number.isFinite(v) ? v : AXIS_LIMIT, 1 / AXIS_LIMIT), AXIS_LIMIT);
}

function decades(lo, hi) {
  const out = [];
  const e0 = Math.floor(Math.log10(lo));
  const e1 = Math.ceil(Math.log10(hi));
  if (!Number.isFinite(e0) || !Number.isFinite(e1) || e1 < e0) return out;
  const step = Math.max(1, Math.ceil((e1 - e0 + 1) / MAX_TICKS));
  for (let e = e0; e <= e1; e += step) out.push(10 ** e);
  return out;
}

const BOUNDS = ['memory', 'compute', 'communication'];

/** An operator's marker: the shape says the phase (prefill ●, decode ▲), as in the dashboard. */
function marker(phase, x, y, attrs, ...children) {
  if (phase === 'decode') {
    const r = 5;
    const d = `M${x.toFixed(2)},${(y - r).toFixed(2)} L${(x + r * 0.9).toFixed(2)},${(y + r * 0.7).toFixed(2)} L${(x - r * 0.9).toFixed(2)},${(y + r * 0.7).toFixed(2)} Z`;
    return s('path', { ...attrs, d }, ...children);
  }
  return s('circle', { ...attrs, cx: x.toFixed(2), cy: y.toFixed(2), r: 4 }, ...children);
}

/** Points of one phase: every operator that computes (AI > 0 and a positive attained rate). */
function points(d, phase) {
  const ops = Array.isArray(obj(d[phase]).ops) ? d[phase].ops : [];
  const out = [];
  ops.forEach((op, index) => {
    const o = obj(op);
    const x = num(o.arithmetic_intensity);
    const y = num(o.attained_flops);
    if (x > 0 && y > 0) out.push({ phase, index, x, y, op: o });
  });
  return out;
}

function renderRoofline(d, registry) {
  const roofs = obj(d.roofs);
  const bw = num(roofs.memory_bandwidth);
  const peaks = Object.entries(obj(roofs.peaks)).filter(([, p]) => isNum(p) && p > 0);
  const pts = PHASES.flatMap(ph => points(d, ph));
  const box = h('div', { class: 'lr-doc-roofline' });
  box.appendChild(h('h3', { class: 'lr-doc-h' }, 'Roofline'));
  if (!pts.length && !peaks.length) {
    box.appendChild(h('div', { class: 'lr-doc-note' }, 'No operators or roofs to draw.'));
    return box;
  }
  const ridges = bw > 0 ? peaks.map(([, p]) => p / bw) : [];
  const xs = [...pts.map(p => p.x), ...ridges];
  const ys = [...pts.map(p => p.y), ...peaks.map(([, p]) => p)];
  let x0 = Math.min(...xs) / 3;
  let x1 = Math.max(...xs) * 3;
  let y1 = Math.max(...ys) * 3;
  let y0 = Math.min(...ys, bw > 0 ? bw * x0 : Infinity) / 3;
  // whole decades at the ends (readable ticks), within finite limits whatever the file holds
  x0 = clampAxis(10 ** Math.floor(Math.log10(clampAxis(x0))));
  x1 = clampAxis(10 ** Math.ceil(Math.log10(clampAxis(x1))));
  y0 = clampAxis(10 ** Math.floor(Math.log10(clampAxis(y0))));
  y1 = clampAxis(10 ** Math.ceil(Math.log10(clampAxis(y1))));
  if (x1 <= x0) x1 = x0 * 10;
  if (y1 <= y0) y1 = y0 * 10;
  const lx0 = Math.log10(x0);
  const lx1 = Math.log10(x1);
  const ly0 = Math.log10(y0);
  const ly1 = Math.log10(y1);
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const X = x => M.left + ((Math.log10(x) - lx0) / (lx1 - lx0)) * pw;
  const Y = y => M.top + (1 - (Math.log10(y) - ly0) / (ly1 - ly0)) * ph;
  const clampY = y => Math.min(Math.max(y, y0), y1);

  const svg = s('svg', {
    class: 'lr-doc-roofline-svg',
    viewBox: `0 0 ${W} ${H}`,
    role: 'img',
    'aria-label': 'Roofline: attained FLOP/s against arithmetic intensity, log–log'
  });
  svg.appendChild(s('title', null, 'Roofline: every operator at its arithmetic intensity and attained FLOP/s'));
  const clipId = `lr-doc-clip-${Math.random().toString(36).slice(2)}`;
  svg.appendChild(s('defs', null, s('clipPath', { id: clipId }, s('rect', { x: M.left, y: M.top, width: pw, height: ph }))));

  // grid + ticks
  const grid = s('g', { class: 'lr-doc-grid' });
  const xTicks = decades(x0, x1);
  const yTicks = decades(y0, y1);
  const everyX = Math.max(1, Math.ceil(xTicks.length / 9));
  const everyY = Math.max(1, Math.ceil(yTicks.length / 7));
  xTicks.forEach((t, i) => {
    grid.appendChild(s('line', { x1: X(t), x2: X(t), y1: M.top, y2: M.top + ph }));
    if (i % everyX === 0) {
      grid.appendChild(s('text', { class: 'lr-doc-tick', x: X(t), y: M.top + ph + 16, 'text-anchor': 'middle' }, fmtDecade(t)));
    }
  });
  yTicks.forEach((t, i) => {
    grid.appendChild(s('line', { x1: M.left, x2: M.left + pw, y1: Y(t), y2: Y(t) }));
    if (i % everyY === 0) {
      grid.appendChild(s('text', { class: 'lr-doc-tick', x: M.left - 6, y: Y(t) + 4, 'text-anchor': 'end' }, fmtDecade(t, 'FLOP/s')));
    }
  });
  svg.appendChild(grid);
  svg.appendChild(s('rect', { class: 'lr-doc-frame', x: M.left, y: M.top, width: pw, height: ph }));
  svg.appendChild(
    s('text', { class: 'lr-doc-axis', x: M.left + pw / 2, y: H - 8, 'text-anchor': 'middle' }, 'arithmetic intensity (FLOP/byte)')
  );
  svg.appendChild(
    s(
      'text',
      { class: 'lr-doc-axis', x: 12, y: M.top + ph / 2, 'text-anchor': 'middle', transform: `rotate(-90 12 ${M.top + ph / 2})` },
      'attained FLOP/s'
    )
  );

  // roofs: min(peak, bandwidth × AI) for each dtype the analysis uses
  const roofLayer = s('g', { class: 'lr-doc-roofs', 'clip-path': `url(#${clipId})` });
  const labels = s('g', { class: 'lr-doc-roof-labels' });
  peaks
    .sort((a, b) => b[1] - a[1])
    .forEach(([dtype, peak], i) => {
      const ridge = bw > 0 ? peak / bw : x0;
      const path =
        bw > 0 && ridge > x0
          ? `M${X(x0)},${Y(clampY(bw * x0))} L${X(Math.min(ridge, x1))},${Y(clampY(Math.min(peak, bw * Math.min(ridge, x1))))} L${X(x1)},${Y(peak)}`
          : `M${X(x0)},${Y(peak)} L${X(x1)},${Y(peak)}`;
      roofLayer.appendChild(
        s('path', { class: `lr-doc-roof${i === 0 ? ' lr-doc-roof-top' : ''}`, d: path, dataset: { dtype } }, s('title', null, `${dtype} roof: ${fmtRate(peak, 'FLOP/s')}; ridge at ${fmtIntensity(ridge)} FLOP/B`))
      );
      labels.appendChild(
        s('text', { class: 'lr-doc-roof-label', x: M.left + pw + 6, y: Y(peak) + 4 }, `${dtype} ${fmtRate(peak, 'FLOP/s')}`)
      );
    });
  if (bw > 0) {
    const xl = x0 * 10 ** ((lx1 - lx0) * 0.04);
    labels.appendChild(
      s(
        'text',
        {
          class: 'lr-doc-roof-label lr-doc-bw-label',
          x: X(xl) + 4,
          y: Y(clampY(bw * xl)) - 6
        },
        `${fmtRate(bw, 'B/s')}`
      )
    );
  }
  svg.appendChild(roofLayer);
  svg.appendChild(labels);

  // operators
  const dots = s('g', { class: 'lr-doc-dots', 'clip-path': `url(#${clipId})` });
  for (const p of pts) {
    const o = p.op;
    const bound = BOUNDS.includes(o.bound) ? o.bound : 'memory';
    const dot = marker(
      p.phase,
      X(p.x),
      Y(p.y),
      {
        class: `lr-doc-dot lr-doc-dot-${p.phase} lr-doc-bound-${bound}`,
        dataset: { phase: p.phase, index: p.index, bound }
      },
      s(
        'title',
        null,
        `${p.phase} · ${str(o.layer_type)} · ${str(o.name)}\n` +
          `${fmtIntensity(p.x)} FLOP/B · ${fmtRate(p.y, 'FLOP/s')} · ${str(o.bound)}-bound · ×${fmtNumber(num(o.count))}`
      )
    );
    dot.addEventListener('click', () => registry.select(p.phase, p.index, true));
    registry.dots.set(`${p.phase}:${p.index}`, dot);
    dots.appendChild(dot);
  }
  svg.appendChild(dots);

  // legend: the colour is the bound (as in the dashboard), the shape the phase
  const legend = s('g', { class: 'lr-doc-legend' });
  const entries = [
    ...BOUNDS.slice(0, 2).map(b => [`${b}-bound`, 'prefill', `lr-doc-legend-swatch lr-doc-bound-${b}`]),
    ...PHASES.map(ph => [ph, ph, 'lr-doc-legend-shape'])
  ];
  entries.forEach(([text, phase, cls], i) => {
    const y = M.top + 14 + i * 16;
    legend.appendChild(marker(phase, M.left + 14, y - 4, { class: `lr-doc-dot ${cls}` }));
    legend.appendChild(s('text', { class: 'lr-doc-legend-text', x: M.left + 24, y }, text));
  });
  svg.appendChild(legend);
  box.appendChild(svg);
  return box;
}

// -- memory breakdown bar ---------------------------------------------------------------------------

function renderMemory(d) {
  const mem = obj(d.memory);
  const parts = [
    ['weights', 'weights', num(mem.weights_bytes)],
    ['kv', 'KV cache', num(mem.kv_cache_bytes)],
    ['activations', 'activations', num(mem.activations_bytes)],
    ['draft', 'draft model', num(mem.draft_bytes)]
  ].filter(([key, , v]) => isNum(v) && (v > 0 || key !== 'draft'));
  const used = parts.reduce((a, [, , v]) => a + (v > 0 ? v : 0), 0);
  const total = isNum(mem.total_bytes) ? mem.total_bytes : used;
  const cap = num(mem.capacity_bytes);
  const scale = Math.max(total, used, isNum(cap) ? cap : 0) || 1;
  const box = h('div', { class: 'lr-doc-memory' });
  box.appendChild(h('h3', { class: 'lr-doc-h' }, 'Memory'));
  const bar = h('div', { class: 'lr-doc-membar', role: 'img', 'aria-label': 'memory breakdown against the device capacity' });
  for (const [key, label, v] of parts) {
    if (!(v > 0)) continue;
    bar.appendChild(
      h('div', {
        class: `lr-doc-seg lr-doc-seg-${key}`,
        dataset: { part: key },
        title: `${label}: ${fmtBytes(v)} (${fmtPercent(isNum(cap) && cap > 0 ? v / cap : NaN)} of capacity)`,
        style: { width: `${((100 * v) / scale).toFixed(3)}%` }
      })
    );
  }
  if (isNum(cap) && cap > 0) {
    bar.appendChild(
      h('div', {
        class: 'lr-doc-capacity',
        title: `capacity: ${fmtBytes(cap)}`,
        style: { left: `${Math.min(100, (100 * cap) / scale).toFixed(3)}%` }
      })
    );
  }
  box.appendChild(bar);
  const legend = h('div', { class: 'lr-doc-memlegend' });
  for (const [key, label, v] of parts) {
    legend.appendChild(
      h('span', { class: 'lr-doc-memitem', dataset: { part: key } }, h('span', { class: `lr-doc-swatch lr-doc-seg-${key}` }), `${label} ${fmtBytes(v)}`)
    );
  }
  legend.appendChild(
    h(
      'span',
      { class: `lr-doc-memitem lr-doc-memtotal ${mem.fits === true ? 'lr-doc-fits' : 'lr-doc-nofit'}` },
      `total ${fmtBytes(total)} of ${fmtBytes(cap)}${mem.fits === true ? ' — fits' : mem.fits === false ? ' — does not fit' : ''}`
    )
  );
  box.appendChild(legend);
  return box;
}

// -- per-operator tables ----------------------------------------------------------------------------

const COLUMNS = OP_COLUMNS;

function phaseSummary(phase, p, st) {
  const bits = [
    phase === 'prefill' ? `${fmtNumber(num(p.tokens))} tokens` : `1 token, ${fmtNumber(num(p.context))} in context`,
    `× batch ${fmtNumber(num(st.batch_size))}`,
    fmtTime(num(p.time_s)),
    `${fmtFlops(num(p.flops))}`,
    `${fmtBytes(num(p.bytes))}`,
    p.bound ? `${str(p.bound)}-bound` : null
  ];
  return bits.filter(Boolean).join(' · ');
}

/** A column's header tooltip; the time is a lower bound only in roofline mode. */
function columnTitle(c, mode) {
  if (c.key === 'time_s' && mode === 'calibrated') {
    return 'calibrated time of ONE run: max(FLOPs / effective rate, bytes / achievable bandwidth) + launch overhead, an estimate';
  }
  if (c.key === 'time_s' && mode === 'custom') {
    return 'roofline time of ONE run at the given shares of the peaks (settings.efficiency)';
  }
  return c.title || '';
}

function renderTable(d, phase, registry) {
  const p = obj(d[phase]);
  const ops = Array.isArray(p.ops) ? p.ops.map(obj) : [];
  const box = h('div', { class: 'lr-doc-phase', dataset: { phase } });
  box.appendChild(
    h('h3', { class: 'lr-doc-h' }, phase === 'prefill' ? 'Prefill' : 'Decode (first step)', h('span', { class: 'lr-doc-phase-summary' }, ` ${phaseSummary(phase, p, obj(d.settings))}`))
  );
  const table = h('table', { class: 'lr-doc-table', dataset: { phase } });
  const tbody = h('tbody');
  let sortKey = null;
  let sortDir = 1;
  const head = h(
    'tr',
    null,
    COLUMNS.map(c =>
      h(
        'th',
        {
          class: c.num ? 'lr-doc-num' : null,
          title: `${columnTitle(c, efficiencyMode(obj(d.settings)))} (click to sort)`,
          dataset: { key: c.key },
          onclick: () => {
            sortDir = sortKey === c.key ? -sortDir : c.num ? -1 : 1;
            sortKey = c.key;
            fill();
          }
        },
        c.label
      )
    )
  );
  table.appendChild(h('thead', null, head));
  table.appendChild(tbody);
  function fill() {
    const order = ops.map((_, i) => i);
    if (sortKey) {
      order.sort((a, b) => {
        const va = ops[a][sortKey];
        const vb = ops[b][sortKey];
        const cmp = typeof va === 'number' && typeof vb === 'number' ? va - vb : str(va, '').localeCompare(str(vb, ''));
        return sortDir * cmp || a - b;
      });
    }
    for (const th of head.children) {
      th.classList.toggle('lr-doc-sorted', th.dataset.key === sortKey);
      th.dataset.dir = th.dataset.key === sortKey ? (sortDir > 0 ? 'asc' : 'desc') : '';
    }
    tbody.replaceChildren();
    for (const i of order) {
      const o = ops[i];
      const tr = h(
        'tr',
        {
          class: `lr-doc-row lr-doc-bound-${str(o.bound, 'x').replace(/[^a-z]/g, '')}`,
          dataset: { index: i, phase },
          title: [o.flops_formula, o.bytes_formula, o.time_formula].filter(x => typeof x === 'string' && x).join('\n') || null,
          onclick: () => registry.select(phase, i, false),
          onmouseenter: () => registry.hover(phase, i, true),
          onmouseleave: () => registry.hover(phase, i, false)
        },
        COLUMNS.map(c =>
          h(
            'td',
            { class: c.num ? 'lr-doc-num' : `lr-doc-col-${c.key}` },
            c.num ? c.fmt(num(o[c.key])) : c.fmt ? c.fmt(str(o[c.key])) : str(o[c.key])
          )
        )
      );
      registry.rows.set(`${phase}:${i}`, tr);
      tbody.appendChild(tr);
    }
    registry.restyle();
  }
  fill();
  if (!ops.length) {
    tbody.appendChild(h('tr', null, h('td', { colspan: COLUMNS.length }, 'No operators.')));
  }
  box.appendChild(h('div', { class: 'lr-doc-table-scroll' }, table));
  return box;
}

/** Links table rows and roofline dots: hover and selection. */
class Registry {
  constructor() {
    this.rows = new Map();
    this.dots = new Map();
    this.selected = null;
  }

  hover(phase, index, on) {
    const key = `${phase}:${index}`;
    const dot = this.dots.get(key);
    if (dot) dot.classList.toggle('lr-doc-hover', on);
    const row = this.rows.get(key);
    if (row) row.classList.toggle('lr-doc-hover', on);
  }

  select(phase, index, scroll) {
    const key = `${phase}:${index}`;
    this.selected = this.selected === key ? null : key;
    this.restyle();
    const row = this.rows.get(key);
    if (scroll && row && this.selected && row.scrollIntoView) row.scrollIntoView({ block: 'nearest' });
  }

  restyle() {
    for (const [k, row] of this.rows) row.classList.toggle('lr-doc-selected', k === this.selected);
    for (const [k, dot] of this.dots) {
      dot.classList.toggle('lr-doc-selected', k === this.selected);
      if (k === this.selected && dot.parentNode) dot.parentNode.appendChild(dot); // on top
    }
  }
}

/** The whole view of one analysis dict, as a detached DOM node. */
export function renderAnalysis(d) {
  const registry = new Registry();
  const root = h('div', { class: 'lr-doc-body' });
  root.appendChild(renderHeadline(d));
  root.appendChild(h('div', { class: 'lr-doc-plots' }, renderRoofline(d, registry), renderMemory(d)));
  for (const phase of PHASES) root.appendChild(renderTable(d, phase, registry));
  return root;
}

export function renderError(message) {
  return h(
    'div',
    { class: 'lr-doc-error' },
    h('strong', null, 'This file is not a readable llmroof analysis. '),
    String(message),
    h('div', { class: 'lr-doc-note' }, 'Expected the JSON written by Result.save("….llmroof.json") (result.to_dict()).')
  );
}

/** Checks the parts the view needs; returns an error message or ''. */
export function validateAnalysis(d) {
  if (!d || typeof d !== 'object' || Array.isArray(d)) return 'the JSON is not an object';
  const missing = ['model', 'hardware', 'settings', 'prefill', 'decode', 'generation', 'memory'].filter(
    k => !d[k] || typeof d[k] !== 'object'
  );
  return missing.length ? `missing: ${missing.join(', ')}` : '';
}

/** Lumino widget: the document content of the viewer. */
export class AnalysisViewer extends Widget {
  constructor(context) {
    super();
    this.addClass('lr-doc');
    this.node.tabIndex = -1;
    this._context = context;
    void context.ready.then(() => {
      if (this.isDisposed) return;
      this._render();
      context.model.contentChanged.connect(this._render, this);
    });
  }

  _render() {
    let view;
    try {
      const d = JSON.parse(this._context.model.toString());
      const problem = validateAnalysis(d);
      view = problem ? renderError(problem) : renderAnalysis(d);
    } catch (e) {
      view = renderError(e && e.message ? e.message : String(e));
    }
    this.node.replaceChildren(view);
  }
}
