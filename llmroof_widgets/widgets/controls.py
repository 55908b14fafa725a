"""``Controls``: the input panel of a dashboard (ipywidgets), two-way bound to a State."""

from __future__ import annotations

import html
import json

import ipywidgets as W
import traitlets

from ..engine import Hardware, list_hardware, list_models
from ..engine.catalog import MAX_CONFIG_BYTES
from ..engine.models import _check_shape as check_config_shape
from ..engine.precision import FORMATS
from ._base import as_state
from .state import PHASES
from .techniques import TechniqueControls

CUSTOM = "custom…"
_DESC = {"description_width": "110px"}


def _full(**kw):
    return W.Layout(width="100%", **kw)


# the precision drop-downs: bit widths (the engine's int, fp16 / int8 / int4 for 16 / 8 / 4) and the
# engine's format names (lr.engine.precision.FORMATS)
_BIT_LABEL = {16: "16 bit (fp16)", 8: "8 bit (int8)", 4: "4 bit (int4)", 32: "32 bit (fp32)"}
_WEIGHT_FORMATS = (
    "bf16",
    "fp8_e4m3",
    "fp8_e5m2",
    "int8",
    "int4",
    "nf4",
    "fp4",
    "q8_0",
    "q6_k",
    "q5_k",
    "q4_k",
    "q4_0",
    "fp16",
    "fp32",
    "tf32",
    "fp8",
)
_ACT_FORMATS = ("bf16", "fp8_e4m3", "fp8_e5m2", "int8", "int4", "fp4", "fp16", "fp32", "tf32", "fp8")
_KV_FORMATS = ("bf16", "fp8_e4m3", "fp8_e5m2", "int8", "int4", "nf4", "fp4", "q8_0", "q4_0", "fp16", "fp32", "fp8")
GROUP_SIZES = (None, 32, 64, 128, 256)
_FORMAT_TIPS = {
    "w_bits": "format of the linear layers' weights (projections, experts); embeddings, lm_head and norms stay "
    "16-bit. Weight-only formats (16-bit activations) dequantize and compute in fp16/bf16; "
    "llama.cpp q*_ formats include their block scales",
    "a_bits": "format of the activations: with 8 or 4 bits the products run on the narrow units "
    "(W8A8 → int8, fp8 → fp8), falling back to fp16 where the device lacks them",
    "kv_bits": "format of the cached keys and values",
}


def format_options(names) -> list:
    """(label, value) pairs: the bit widths first, then the engine's format names."""
    assert all(n in FORMATS for n in names), names
    return [(_BIT_LABEL[b], b) for b in (16, 8, 4, 32)] + [(n, n) for n in names]


class Controls(W.VBox):
    """Model, device, workload, precision, phase and convention controls for a :class:`State`.

    - ``model``: a Combobox over ``lr.list_models()`` (type to search; a Hugging Face id or a path
      to a config.json also works). A dict or ModelConfig set in code with ``state.model = ...``
      shows its name here.
    - ``hardware``: a Dropdown over ``lr.list_hardware()``; "custom…" opens a small editor (name,
      memory GB, bandwidth GB/s, peak TFLOP/s) that sets ``state.hardware = lr.Hardware(...)``.
    - precision: weight / activation / KV-cache format (bit widths or the engine's format names such as
      ``"fp8_e4m3"``, ``"nf4"``, ``"q4_0"``) and the weights' quantization group size.
    - ``techniques``: an (initially collapsed) accordion section holding :class:`TechniqueControls`
      (``controls.technique_controls``): FlashAttention and fusion, KV-cache compression, speculative
      decoding, early exit, sparsity, offloading, parallelism, efficiency mode, each a collapsible
      section that says what the engine models. More widgets can be appended:
      ``controls.techniques.children += (widget,)``.

    Controls only set State inputs; a value the engine rejects shows in the dashboard's error
    area and the last valid result stays.
    """

    def __init__(self, state, **kwargs):
        self.state = as_state(state)
        self._guard = False
        models = list_models()
        self.model = W.Combobox(
            options=models,
            placeholder="type to search, hf id or config path",
            description="model",
            ensure_option=False,
            continuous_update=False,
            layout=_full(),
            style=_DESC,
        )
        # a config.json from the user's disk (read as data, never executed)
        self.model_upload = W.FileUpload(
            accept=".json",
            multiple=False,
            description="config.json",
            tooltip="analyze a Hugging Face config.json from your disk",
            layout=W.Layout(width="auto", margin="0 0 4px 118px"),
        )
        self.model_upload.add_class("lr-model-upload")
        self.hardware = W.Dropdown(
            options=[*list_hardware(), CUSTOM], description="device", layout=_full(), style=_DESC
        )
        self.hw_name = W.Text(
            description="name", value="custom device", continuous_update=False, layout=_full(), style=_DESC
        )
        self.hw_memory = W.BoundedFloatText(
            description="memory GB", min=0.0, max=1e6, step=1.0, continuous_update=False, layout=_full(), style=_DESC
        )
        self.hw_bandwidth = W.BoundedFloatText(
            description="bandwidth GB/s",
            min=0.0,
            max=1e7,
            step=10.0,
            continuous_update=False,
            layout=_full(),
            style=_DESC,
        )
        self.hw_peak = W.BoundedFloatText(
            description="peak TFLOP/s", min=0.0, max=1e6, step=1.0, continuous_update=False, layout=_full(), style=_DESC
        )
        self.hw_editor = W.VBox(
            [
                self.hw_name,
                self.hw_memory,
                self.hw_bandwidth,
                self.hw_peak,
                W.Label("peak: dense fp16/bf16 matrix rate; memory and bandwidth in 10⁹ units"),
            ],
            layout=W.Layout(display="none", padding="0 0 0 12px"),
        )
        self.hw_editor.add_class("lr-hw-editor")

        self.batch_size = W.IntSlider(
            description="batch size", min=1, max=256, value=1, continuous_update=True, layout=_full(), style=_DESC
        )
        self.prompt_len = W.BoundedIntText(
            description="prompt tokens",
            min=1,
            max=10**9,
            value=1024,
            continuous_update=False,
            layout=_full(),
            style=_DESC,
        )
        self.gen_len = W.BoundedIntText(
            description="generated", min=1, max=10**9, value=256, continuous_update=False, layout=_full(), style=_DESC
        )
        self.w_bits = W.Dropdown(
            options=format_options(_WEIGHT_FORMATS),
            value=16,
            description="weights",
            layout=_full(),
            style=_DESC,
            tooltip=_FORMAT_TIPS["w_bits"],
        )
        self.a_bits = W.Dropdown(
            options=format_options(_ACT_FORMATS),
            value=16,
            description="activations",
            layout=_full(),
            style=_DESC,
            tooltip=_FORMAT_TIPS["a_bits"],
        )
        self.kv_bits = W.Dropdown(
            options=format_options(_KV_FORMATS),
            value=16,
            description="KV cache",
            layout=_full(),
            style=_DESC,
            tooltip=_FORMAT_TIPS["kv_bits"],
        )
        # value 0 stands for None (per channel): a Dropdown's None means "nothing selected"
        self.group_size = W.Dropdown(
            options=[("per channel", 0)] + [(str(g), g) for g in GROUP_SIZES[1:]],
            value=0,
            description="group size",
            layout=_full(),
            style=_DESC,
            tooltip="group-wise weight quantization: each group's scale (and zero point) adds "
            "its bits / group size to every weight (int4 g128 = 4.16 bits); "
            "per channel: no overhead. Only for quantized weights",
        )
        tb = {"description_width": "110px", "button_width": "72px"}
        self.phase = W.ToggleButtons(
            options=list(PHASES), description="phase", style=tb, tooltips=["the prompt pass", "one decode step", "both"]
        )
        self.logits = W.ToggleButtons(
            options=["last", "all"],
            description="logits",
            style=tb,
            tooltips=[
                "logits for the last prompt position only (generation)",
                "logits for every prompt position (a full forward)",
            ],
        )
        self.attention = W.ToggleButtons(
            options=["causal", "full"],
            description="attention",
            style=tb,
            tooltips=[
                "prefill counts the causal half of the score matrix",
                "prefill counts the whole score matrix (eager attention)",
            ],
        )
        for w in (self.phase, self.logits, self.attention):
            w.layout.width = "auto"  # not the 300 px inline default, which wraps the buttons under the label
        self.technique_controls = TechniqueControls(self.state)
        self.techniques = W.VBox([self.technique_controls.box], layout=W.Layout(width="auto"))
        self.techniques.add_class("lr-techniques")
        self.techniques_accordion = W.Accordion(
            children=[self.techniques], titles=("Techniques",), selected_index=None, layout=_full()
        )
        self.techniques_accordion.add_class("lr-tech-accordion")

        def section(title, tip=None):
            lab = W.HTML(f"<b>{html.escape(title)}</b>", tooltip=tip)
            lab.add_class("lr-section")
            return lab

        children = [
            section("Model and device"),
            self.model,
            self.model_upload,
            self.hardware,
            self.hw_editor,
            section("Workload"),
            self.batch_size,
            self.prompt_len,
            self.gen_len,
            section(
                "Precision (quantization)",
                "bits or the engine's format names for the weights, the "
                "activations and the KV cache; group-wise scales for quantized weights",
            ),
            self.w_bits,
            self.a_bits,
            self.kv_bits,
            self.group_size,
            section("View and conventions"),
            self.phase,
            self.logits,
            self.attention,
            self.techniques_accordion,
        ]
        kwargs.setdefault("layout", W.Layout(width="360px", min_width="320px", padding="0 8px 0 0"))
        super().__init__(children=children, **kwargs)
        self.add_class("lr-controls")

        # widget -> state
        simple = ("batch_size", "prompt_len", "gen_len", "w_bits", "a_bits", "kv_bits", "phase", "logits", "attention")
        for name in simple:
            getattr(self, name).observe(self._to_state(name), names="value")
        self.model.observe(self._model_to_state, names="value")
        self.model_upload.observe(self._upload_to_state, names="value")
        self.hardware.observe(self._hardware_to_state, names="value")
        self.group_size.observe(self._group_size_to_state, names="value")
        for w in (self.hw_name, self.hw_memory, self.hw_bandwidth, self.hw_peak):
            w.observe(self._custom_to_state, names="value")
        # state -> widget
        self._watched = [*simple, "model", "hardware", "result", "extra"]
        self.state.observe(self._from_state, names=self._watched)
        self._from_state()

    # -- widget -> state -------------------------------------------------------------------------
    def _to_state(self, name):
        def handler(change):
            if not self._guard:
                setattr(self.state, name, change["new"])

        return handler

    def _group_size_to_state(self, change):
        if not self._guard:
            self.state.update(group_size=change["new"] or None)

    def _upload_to_state(self, change):
        """An uploaded config.json becomes the State's model (a dict, named after the file)."""
        files = change["new"]
        if not files:
            return
        f = files[0]
        name = f.get("name", "config.json") if isinstance(f, dict) else getattr(f, "name", "config.json")
        content = f["content"] if isinstance(f, dict) else f.content
        name = str(name)[:200]
        try:
            data = bytes(content)
            if len(data) > MAX_CONFIG_BYTES:
                raise ValueError(f"{len(data):,} bytes; at most {MAX_CONFIG_BYTES:,} are read")
            cfg = json.loads(data.decode("utf-8-sig"))
            if not isinstance(cfg, dict):
                raise ValueError("it does not hold a JSON object")
            check_config_shape(cfg)  # nesting and size, before the dict reaches any trait
        except RecursionError:
            self.state.error = f"model: the uploaded {name!r} nests JSON too deeply"
            return
        except (ValueError, TypeError, UnicodeDecodeError) as e:
            self.state.error = f"model: the uploaded {name!r} is not a valid config.json ({e})"
            return
        cfg.setdefault("_name_or_path", name[:-5] if name.endswith(".json") else name)
        self.state.model = cfg

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
            hw = Hardware(
                name=self.hw_name.value.strip() or "custom device",
                memory_bytes=float(self.hw_memory.value) * 1e9,
                memory_bandwidth=float(self.hw_bandwidth.value) * 1e9,
                peak_flops={"fp16": float(self.hw_peak.value) * 1e12, "bf16": float(self.hw_peak.value) * 1e12},
            )
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

    def _set_format(self, widget, value):
        """Show a bit width or a format name; a valid name missing from the list is added to it."""
        values = [v for _, v in widget.options]
        if isinstance(value, str) and value not in values and value.strip().lower() in FORMATS:
            widget.options = [*widget.options, (value, value)]
        self._set(widget, value)

    def _from_state(self, change=None):
        if self._guard:
            return
        st = self.state
        self._guard = True
        try:
            for name in ("prompt_len", "gen_len", "phase", "logits", "attention"):
                self._set(getattr(self, name), getattr(st, name))
            for name in ("w_bits", "a_bits", "kv_bits"):
                self._set_format(getattr(self, name), getattr(st, name))
            gs = st.group_size
            if gs not in [v for _, v in self.group_size.options] and isinstance(gs, int) and not isinstance(gs, bool):
                self.group_size.options = sorted([*self.group_size.options, (str(gs), gs)], key=lambda o: o[1])
            self._set(self.group_size, gs or 0)
            w = st.w_bits
            quantized = (isinstance(w, (int, float)) and w < 16) or (
                isinstance(w, str) and w.lower() in FORMATS and FORMATS[w.lower()][0] < 16
            )
            self.group_size.disabled = not quantized and gs is None
            n = len(self.technique_controls.active())
            self.techniques_accordion.set_title(0, "Techniques" if not n else f"Techniques · {n} active")
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
        self.technique_controls.close()
        super().close()
