// Readable units for the viewer (decimal SI, as the engine and vendors use: 1 GB = 1e9 B).
// Mirrors js/common.js of the widgets so both show the same text.

function sig3(x) {
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

const SI = ['', 'k', 'M', 'G', 'T', 'P', 'E'];

export function isNum(x) {
  return typeof x === 'number' && Number.isFinite(x);
}

function withPrefix(x, unit) {
  if (!isNum(x)) return '–';
  if (x === 0) return `0 ${unit}`;
  const a = Math.abs(x);
  let i = 0;
  while (i < SI.length - 1 && a >= 1000 ** (i + 1) * 0.9995) i++;
  return `${sig3(x / 1000 ** i)} ${SI[i]}${unit}`;
}

export const fmtFlops = x => withPrefix(x, 'FLOP');
export const fmtBytes = x => withPrefix(x, 'B');
export const fmtRate = (x, unit) => withPrefix(x, unit);

export function fmtTime(s) {
  if (!isNum(s)) return '–';
  if (s === 0) return '0 s';
  const a = Math.abs(s);
  if (a < 1e-6) return `${sig3(s * 1e9)} ns`;
  if (a < 1e-3) return `${sig3(s * 1e6)} µs`;
  if (a < 1) return `${sig3(s * 1e3)} ms`;
  return `${sig3(s)} s`;
}

export function fmtNumber(x) {
  if (!isNum(x)) return '–';
  if (Number.isInteger(x)) return x.toLocaleString('en-US');
  return sig3(x);
}

export function fmtIntensity(x) {
  if (!isNum(x)) return '–';
  if (x === 0) return '0';
  if (Math.abs(x) < 0.01) return x.toExponential(1);
  return sig3(x);
}

export function fmtPercent(x) {
  if (!isNum(x)) return '–';
  const p = x * 100;
  if (p === 0) return '0 %';
  if (Math.abs(p) < 0.1) return '<0.1 %';
  return `${p >= 10 ? p.toFixed(1) : p.toFixed(2)} %`;
}

/** A decade tick label: 0.01, 0.1, 1, 10, 100, 1k, 10k ...; with a unit: 10 TFLOP/s, 1 PFLOP/s. */
export function fmtDecade(x, unit = '') {
  if (unit || x >= 1000) {
    const t = withPrefix(x, unit).replace(/\.0+ /, ' ');
    return unit ? t : t.replace(' ', '');
  }
  if (x >= 1) return String(Math.round(x));
  return String(Number(x.toPrecision(1)));
}
