"""``Controls``: the input panel of a dashboard (ipywidgets), two-way bound to a State."""
from __future__ import annotations

import html

import ipywidgets as W
import traitlets

from ..engine import Hardware, list_hardware, list_models
from ._base import as_state
from .state import BITS, PHASES

CUSTOM = "custom…"
_DESC = {"description_width": "110px"}


def _full(**kw):
    return W.Layout(width="100%", **kw)


class Controls(W.VBox):
    """Model, device, workload, precision, phase and convention controls for a :class:`State`.

    - ``model``: a Combobox over ``lr.list_models()`` (type to search; a Hugging Face id or a path
      to a config.json also works). A dict or ModelConfig set in code with ``state.model = ...``
      shows its name here.
    - ``hardware``: a Dropdown over ``lr.list_hardware()``; "custom…" opens a small editor (name,
      memory GB, bandwidth GB/s, peak TFLOP/s) that sets ``state.hardware = lr.Hardware(...)``.
    - ``techniques``: an (initially collapsed) accordion section that later issues fill with
      technique knobs: ``controls.techniques.children += (widget,)``.

    Controls only set State inputs; a value the engine rejects shows in the dashboard's error
    area and the last valid result stays.
    """

    def __init__(self, state, **kwargs):
        self.state = as_state(state)
        self._guard = False
        models = list_models()
        self.model = W.Combobox(options=models, placeholder="type to search, hf id or config path",
                                description="model", ensure_option=False, continuous_update=False,
                                layout=_full(), style=_DESC)
        self.hardware = W.Dropdown(options=[*list_hardware(), CUSTOM], description="device", layout=_full(),
                                   style=_DESC)
        self.hw_name = W.Text(description="name", value="custom device", continuous_update=False,
                              layout=_full(), style=_DESC)
        self.hw_memory = W.BoundedFloatText(description="memory GB", min=0.0, max=1e6, step=1.0,
                                            continuous_update=False, layout=_full(), style=_DESC)
        self.hw_bandwidth = W.BoundedFloatText(description="bandwidth GB/s", min=0.0, max=1e7, step=10.0,
                                               continuous_update=False, layout=_full(), style=_DESC)
        self.hw_peak = W.BoundedFloatText(description="peak TFLOP/s", min=0.0, max=1e6, step=1.0,
                                          continuous_update=False, layout=_full(), style=_DESC)
        self.hw_editor = W.VBox([self.hw_name, self.hw_memory, self.hw_bandwidth, self.hw_peak,
                                 W.Label("peak: dense fp16/bf16 matrix rate; memory and bandwidth in 10⁹ units")],
                                layout=W.Layout(display="none", padding="0 0 0 12px"))
        self.hw_editor.add_class("lr-hw-editor")

        self.batch_size = W.IntSlider(description="batch size", min=1, max=256, value=1, continuous_update=True,
                                      layout=_full(), style=_DESC)
        self.prompt_len = W.BoundedIntText(description="prompt tokens", min=1, max=10**9, value=1024,
                                           continuous_update=False, layout=_full(), style=_DESC)
        self.gen_len = W.BoundedIntText(description="generated", min=1, max=10**9, value=256,
                                        continuous_update=False, layout=_full(), style=_DESC)
        self.w_bits = W.Dropdown(options=list(BITS), description="weight bits", layout=_full(), style=_DESC)
        self.a_bits = W.Dropdown(options=list(BITS), description="activation bits", layout=_full(), style=_DESC)
        self.kv_bits = W.Dropdown(options=list(BITS), description="KV bits", layout=_full(), style=_DESC)
        tb = {"description_width": "110px", "button_width": "72px"}
        self.phase = W.ToggleButtons(options=list(PHASES), description="phase", style=tb,
                                     tooltips=["the prompt pass", "one decode step", "both"])
        self.logits = W.ToggleButtons(options=["last", "all"], description="logits", style=tb,
                                      tooltips=["logits for the last prompt position only (generation)",
                                                "logits for every prompt position (a full forward)"])
        self.attention = W.ToggleButtons(options=["causal", "full"], description="attention", style=tb,
                                         tooltips=["prefill counts the causal half of the score matrix",
                                                   "prefill counts the whole score matrix (eager attention)"])
        self.techniques = W.VBox([W.Label("Technique knobs (quantization schemes, parallelism, speculative "
                                          "decoding, …) arrive here in later versions.")])
        self.techniques.add_class("lr-techniques")
        self.techniques_accordion = W.Accordion(children=[self.techniques], titles=("Techniques",),
                                                selected_index=None, layout=_full())

        def section(title):
            lab = W.HTML(f"<b>{html.escape(title)}</b>")
            lab.add_class("lr-section")
            return lab

        children = [
            section("Model and device"), self.model, self.hardware, self.hw_editor,
            section("Workload"), self.batch_size, self.prompt_len, self.gen_len,
            section("Precision"), self.w_bits, self.a_bits, self.kv_bits,
            section("View and conventions"), self.phase, self.logits, self.attention,
            self.techniques_accordion,
        ]
        kwargs.setdefault("layout", W.Layout(width="360px", min_width="320px", padding="0 8px 0 0"))
        super().__init__(children=children, **kwargs)
        self.add_class("lr-controls")

        # widget -> state
        simple = ("batch_size", "prompt_len", "gen_len", "w_bits", "a_bits", "kv_bits", "phase", "logits",
                  "attention")
        for name in simple:
            getattr(self, name).observe(self._to_state(name), names="value")
        self.model.observe(self._model_to_state, names="value")
        self.hardware.observe(self._hardware_to_state, names="value")
        for w in (self.hw_name, self.hw_memory, self.hw_bandwidth, self.hw_peak):
            w.observe(self._custom_to_state, names="value")
        # state -> widget
        self._watched = [*simple, "model", "hardware", "result"]
        self.state.observe(self._from_state, names=self._watched)
        self._from_state()

    # -- widget -> state -------------------------------------------------------------------------
    def _to_state(self, name):
        def handler(change):
            if not self._guard:
                setattr(self.state, name, change["new"])
        return handler

    def _model_to_state(self, change):
        if self._guard:
            return
        value = (change["new"] or "").strip()
        if value and value != self._model_text():
            self.state.model = value

    def _hardware_to_state(self, change):
        if self._guard:
            return
        if change["new"] == CUSTOM:
            self.hw_editor.layout.display = "flex"
            self._prefill_editor()
            self._custom_to_state()
        else:
            self.hw_editor.layout.display = "none"
            self.state.hardware = change["new"]

    def _prefill_editor(self):
        """Start the custom device from the current one (its name, memory, bandwidth, fp16 peak)."""
        r = self.state.result
        if r is None:
            return
        d = r.hardware.to_dict()
        pf = d.get("peak_flops") or {}
        peak = pf.get("fp16") or pf.get("bf16") or max(pf.values())
        self._guard = True
        try:
            self._set(self.hw_name, f"{d.get('name', 'device')} (custom)")
            self._set(self.hw_memory, float(d["memory_bytes"]) / 1e9)
            self._set(self.hw_bandwidth, float(d["memory_bandwidth"]) / 1e9)
            self._set(self.hw_peak, float(peak) / 1e12)
        finally:
            self._guard = False

    def _custom_to_state(self, change=None):
        if self._guard or self.hardware.value != CUSTOM:
            return
        try:
            hw = Hardware(name=self.hw_name.value.strip() or "custom device",
                          memory_bytes=float(self.hw_memory.value) * 1e9,
                          memory_bandwidth=float(self.hw_bandwidth.value) * 1e9,
                          peak_flops={"fp16": float(self.hw_peak.value) * 1e12,
                                      "bf16": float(self.hw_peak.value) * 1e12})
        except ValueError as e:  # shown like any other bad input
            self.state.error = str(e)
            return
        self.state.hardware = hw

    # -- state -> widget -------------------------------------------------------------------------
    def _model_text(self) -> str:
        m = self.state.model
        if isinstance(m, str):
            return m
        r = self.state.result
        if r is not None and not isinstance(m, str):
            return str(getattr(r.model, "name", ""))
        return str(getattr(m, "name", "") or (m.get("name") if isinstance(m, dict) else "") or "custom model")

    def _set(self, widget, value):
        try:
            if widget.value != value:
                widget.value = value
        except traitlets.TraitError:
            pass  # a value this control cannot show (e.g. bits=3): the error area explains it

    def _from_state(self, change=None):
        if self._guard:
            return
        st = self.state
        self._guard = True
        try:
            for name in ("prompt_len", "gen_len", "w_bits", "a_bits", "kv_bits", "phase", "logits", "attention"):
                self._set(getattr(self, name), getattr(st, name))
            b = st.batch_size
            if isinstance(b, int) and b > self.batch_size.max:
                self.batch_size.max = int(2 ** (b - 1).bit_length())
            if isinstance(b, int) and b >= self.batch_size.min:
                self._set(self.batch_size, b)
            self._set(self.model, self._model_text())
            hw = st.hardware
            if isinstance(hw, str) and hw in self.hardware.options:
                self._set(self.hardware, hw)
                self.hw_editor.layout.display = "none"
            elif isinstance(hw, str):
                pass  # an alias or a bad id: the error area says which
            else:
                d = hw.to_dict() if hasattr(hw, "to_dict") else dict(hw) if isinstance(hw, dict) else {}
                if d:
                    self._set(self.hardware, CUSTOM)
                    self.hw_editor.layout.display = "flex"
                    self._set(self.hw_name, str(d.get("name", "custom device")))
                    self._set(self.hw_memory, float(d.get("memory_bytes", 0)) / 1e9)
                    self._set(self.hw_bandwidth, float(d.get("memory_bandwidth", 0)) / 1e9)
                    pf = d.get("peak_flops") or {}
                    peak = pf.get("fp16") or pf.get("bf16") or (max(pf.values()) if pf else 0.0)
                    self._set(self.hw_peak, float(peak) / 1e12)
        finally:
            self._guard = False

    def close(self):
        try:
            self.state.unobserve(self._from_state, names=self._watched)
        except ValueError:
            pass
        super().close()
