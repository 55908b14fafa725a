// The extension's settings (schema/plugin.json) and the dashboard cell they produce.
//
// The same defaults are in llmroof_widgets/lab_settings.py (DEFAULTS) and in the widgets' State;
// tests/test_labextension.py checks that the three agree.

export const PLUGIN_ID = 'llmroof-widgets:plugin';

export const DEFAULTS = Object.freeze({
  device: 'h100-sxm',
  weightBits: 16,
  model: 'meta-llama/Llama-3.1-8B'
});

export const WEIGHT_BITS = [16, 8, 4, 32];

function nonEmptyString(value, fallback) {
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : fallback;
}

/** The composite settings as {device, weightBits, model}, each checked, defaults where invalid. */
export function normalizeSettings(composite) {
  const c = composite && typeof composite === 'object' ? composite : {};
  const bits = Number(c.weightBits);
  return {
    device: nonEmptyString(c.device, DEFAULTS.device),
    weightBits: WEIGHT_BITS.includes(bits) ? bits : DEFAULTS.weightBits,
    model: nonEmptyString(c.model, DEFAULTS.model)
  };
}

/**
 * A Python string literal for any text. JSON string syntax is a subset of Python's (\", \\, \n,
 * \uXXXX ...), so a hostile model name cannot end the literal and inject code.
 */
export function pyString(text) {
  // bidirectional controls escaped (\u202e ...): the cell's source reads as it runs (no "Trojan Source")
  return JSON.stringify(String(text)).replace(
    /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g,
    c => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`
  );
}

/** The source of the dashboard cell, with the settings passed explicitly. */
export function dashboardCode(settings) {
  const s = normalizeSettings(settings);
  return [
    'import llmroof_widgets as lr',
    '',
    `ui = lr.Dashboard(model=${pyString(s.model)}, hardware=${pyString(s.device)}, w_bits=${s.weightBits})`,
    'ui'
  ].join('\n');
}
