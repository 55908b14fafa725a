// Readable units for the viewer: the widgets' own formatters (js/format.js), so both show the same text.
import { withPrefix } from '../../js/format.js';

export * from '../../js/format.js';

/** A decade tick label: 0.01, 0.1, 1, 10, 100, 1k, 10k ...; with a unit: 10 TFLOP/s, 1 PFLOP/s. */
export function fmtDecade(x, unit = '') {
  if (unit || x >= 1000) {
    const t = withPrefix(x, unit).replace(/\.0+ /, ' ');
    return unit ? t : t.replace(' ', '');
  }
  if (x >= 1) return String(Math.round(x));
  return String(Number(x.toPrecision(1)));
}
