"""The technique knobs of the controls panel: one collapsible section per technique of the survey.

Each section says in a sentence or two what the engine models and what it assumes; every knob
sets the State's technique knobs (``State.update(<knob>=value)``: one recomputation, stored in
``State.extra``) and follows them when they change in code. A combination the engine rejects
shows its ``ValueError`` in the dashboard's error area and the last valid views stay.
"""

from __future__ import annotations

import html

import ipywidgets as W
import traitlets

from ..engine import Speculative, list_models
from .state import KNOBS, State

_DESC = {"description_width": "96px"}
_TB = {"description_width": "96px", "button_width": "56px"}
_TB_AUTO = {"description_width": "96px", "button_width": "auto"}  # buttons as wide as their words

OFF = "off"
CUSTOM_DRAFT = "__custom_draft__"
EFFICIENCY = ("roofline", "calibrated", "custom")
SPARSITY = ("none", "2:4", "unstructured")

# what each section's model is, and what it assumes (shown at the top of the section)
SECTIONS = {
    "attention": (
        "Attention & fusion",
        "FlashAttention: the S×S score matrix never reaches device memory. <i>ideal</i>: Q, K, V are read "
        "once and O written once; <i>tiled</i>: FlashAttention-2, K and V are re-read once per query tile "
        "sized by the device's on-chip memory per SM. <i>Fused</i>: norms, activations, rotary, softmax and "
        "residual adds run inside their neighbours' kernels and move no bytes of their own. "
        "MLA (DeepSeek only): <i>absorbed</i> decodes over the cached latent; <i>naive</i> re-expands it.",
    ),
    "kv": (
        "KV-cache compression",
        "Eviction as in H2O / SnapKV: decode keeps this share of the cached tokens (or at most the budget), "
        "in memory and in attention traffic. The prefill still sees the whole prompt; the accuracy cost "
        "is not modelled.",
    ),
    "speculative": (
        "Speculative decoding",
        "A draft proposes γ tokens, the target verifies them in one pass over γ + 1 tokens; each drafted "
        "token is accepted with probability α, independently: (1 − α^(γ+1)) / (1 − α) tokens per round. "
        "<i>mtp</i>: the target's multi-token-prediction module as the draft (the shapes its config declares, "
        "e.g. DeepSeek-V3's; one shaped like its last layer when it declares none), sharing its embedding and lm_head. "
        "The draft's weights and KV cache count in memory.",
    ),
    "early_exit": (
        "Early exit",
        "A decode token leaves the network early: it runs this share of the layers on average "
        "(the prefill runs them all). The exit classifiers' cost and the accuracy are not modelled.",
    ),
    "sparsity": (
        "Sparsity",
        "<i>2:4</i>: half the weights and 2-bit indices are stored; 2× compute only on devices with sparse "
        "tensor cores. <i>Unstructured</i>: the non-zeros plus a bitmask are stored and read; no compute "
        "speed-up (dense kernels).",
    ),
    "offload": (
        "Offloading",
        "Shares of the weights, the KV cache and the MoE experts held in host memory and streamed over the "
        "device's host link (PCIe / C2C) each time they are used, overlapped with device-memory reads. "
        "Host memory is assumed large enough.",
    ),
    "parallel": (
        "Parallelism",
        "Tensor (TP), pipeline (PP) and expert (EP) parallel degrees. Memory and times are per device; "
        "collectives (all-reduces after attention and MLP, logits all-gather, pipeline sends, expert "
        "all-to-all) are operators with bound <i>communication</i>, timed α–β on the interconnect. "
        "TP must divide the attention heads and the MLP width.",
    ),
    "efficiency": (
        "Efficiency",
        "<i>roofline</i>: every operator at the device's peak compute or bandwidth, a strict lower bound. "
        "<i>calibrated</i>: an explained model of real kernels (achievable bandwidth and GEMM efficiency "
        "per device family, small-M GEMM efficiency, dequantization and launch overheads); times are "
        "estimates, not bounds. <i>custom</i>: your achievable shares of the peaks.",
    ),
}
ORDER = tuple(SECTIONS)


def _full(**kw):
    # "auto", not "100%": inside the accordions' padded sections a 100 % width would overflow
    return W.Layout(width="auto", **kw)


def _desc(html_text: str) -> W.HTML:
    # inline style: the controls are plain ipywidgets and may be shown without the anywidgets' stylesheet
    style = (
        "font-size: 11.5px; line-height: 1.4; white-space: normal; margin: 0 0 4px 0; "
        "color: var(--jp-ui-font-color2, #5f6368)"
    )
    w = W.HTML(f'<div class="lr-tech-desc" style="{style}">{html_text}</div>', layout=_full())
    w.add_class("lr-tech-desc-box")
    return w


def _slider(description, lo, hi, step, value, tooltip, fmt=".2f"):
    return W.FloatSlider(
        description=description,
        min=lo,
        max=hi,
        step=step,
        value=value,
        readout_format=fmt,
        continuous_update=True,
        layout=_full(),
        style=_DESC,
        tooltip=tooltip,
    )


class TechniqueControls:
    """The technique knobs, grouped in an accordion of sections, two-way bound to a State.

    ``box`` is the widget to show; ``sections`` the accordion (one section open at a time, all
    closed at first); each knob is an attribute (``flash_attention``, ``tp``, ``draft``, ...).
    """

    def __init__(self, state: State):
        self.state = state
        self._guard = False
        self._custom_draft = None
        k = KNOBS
        # -- attention & fusion
        self.flash_attention = W.ToggleButtons(
            options=["off", "ideal", "tiled"],
            value=k["flash_attention"],
            description="FlashAttention",
            style=_TB,
            tooltips=[
                "scores written to and read back from device memory",
                "Q, K, V read once, O written once: no score matrix",
                "FlashAttention-2 tiling: K and V re-read per query tile (on-chip memory per SM)",
            ],
        )
        self.fused = W.Checkbox(
            value=k["fused"],
            description="fuse element-wise operators",
            indent=False,
            layout=_full(),
            tooltip="norms, activations, rotary, softmax and residual adds move no bytes",
        )
        self.mla = W.ToggleButtons(
            options=["absorbed", "naive"],
            value=k["mla"],
            description="MLA decode",
            style=_TB_AUTO,
            tooltips=[
                "weights absorbed: attention over the cached latent (FlashMLA)",
                "the latent re-expanded through kv_b_proj at every step (transformers)",
            ],
        )
        # -- KV cache
        self.kv_keep_ratio = _slider(
            "keep ratio",
            0.05,
            1.0,
            0.05,
            k["kv_keep_ratio"],
            "share of the cached tokens decode keeps (1 = no eviction)",
        )
        self.kv_budget = W.BoundedIntText(
            value=k["kv_budget"] or 0,
            min=0,
            max=10**9,
            step=256,
            description="budget (tokens)",
            continuous_update=False,
            layout=_full(),
            style=_DESC,
            tooltip="at most this many cached tokens per sequence; 0 = no budget",
        )
        # -- speculative decoding
        self.draft = W.Dropdown(
            options=self._draft_options(),
            value=OFF,
            description="draft",
            layout=_full(),
            style=_DESC,
            tooltip="off, the target's own MTP head, or a catalog model as the draft",
        )
        spec = Speculative()
        self.gamma = W.IntSlider(
            value=spec.gamma,
            min=0,
            max=16,
            description="draft γ",
            layout=_full(),
            style=_DESC,
            tooltip="tokens the draft proposes per round",
            disabled=True,
        )
        self.acceptance = _slider(
            "acceptance α", 0.0, 1.0, 0.05, spec.acceptance, "probability that each drafted token is accepted"
        )
        self.acceptance.disabled = True
        self.tokens_per_round = W.Label(layout=_full())
        # -- early exit
        self.early_exit_fraction = _slider(
            "layers run", 0.05, 1.0, 0.05, k["early_exit_fraction"], "mean share of the layers a decode token runs"
        )
        # -- sparsity
        self.sparsity_mode = W.ToggleButtons(
            options=list(SPARSITY),
            value="none",
            description="sparsity",
            style=_TB_AUTO,
            tooltips=["dense weights", "2:4 structured sparsity", "unstructured: a share of zero weights"],
        )
        self.sparsity_share = _slider("zero share", 0.0, 0.95, 0.05, 0.5, "share of the weights that are zero")
        self.sparsity_share.disabled = True
        # -- offloading
        self.offload_weights = _slider("weights", 0.0, 1.0, 0.05, 0.0, "share of the weights held in host memory")
        self.offload_kv = _slider("KV cache", 0.0, 1.0, 0.05, 0.0, "share of the KV cache held in host memory")
        self.offload_experts = _slider(
            "experts", 0.0, 1.0, 0.05, 0.0, "share of the MoE experts held in host memory (MoE models only)"
        )
        # -- parallelism
        self.tp = W.BoundedIntText(
            value=k["tp"],
            min=1,
            max=1024,
            description="tensor (TP)",
            layout=_full(),
            style=_DESC,
            tooltip="tensor-parallel degree: must divide the heads and MLP width",
        )
        self.pp = W.BoundedIntText(
            value=k["pp"],
            min=1,
            max=1024,
            description="pipeline (PP)",
            layout=_full(),
            style=_DESC,
            tooltip="pipeline stages (at most the number of layers)",
        )
        self.ep = W.BoundedIntText(
            value=k["ep"],
            min=1,
            max=1024,
            description="expert (EP)",
            layout=_full(),
            style=_DESC,
            tooltip="expert-parallel degree (MoE models; ≤ batch size)",
        )
        # -- efficiency
        self.efficiency = W.ToggleButtons(
            options=list(EFFICIENCY),
            value="roofline",
            style={"button_width": "auto"},
            tooltips=[
                "peak rates: a lower bound on time",
                "a calibrated model of real kernels",
                "your own achievable shares of the peaks",
            ],
        )
        self.eff_compute = _slider("compute", 0.05, 1.0, 0.05, 1.0, "achievable share of the compute peak")
        self.eff_memory = _slider("memory", 0.05, 1.0, 0.05, 1.0, "achievable share of the memory bandwidth")
        self.eff_comm = _slider("interconnect", 0.05, 1.0, 0.05, 1.0, "achievable share of the interconnect bandwidth")
        self.eff_custom = W.VBox([self.eff_compute, self.eff_memory, self.eff_comm], layout=_full(display="none"))

        for w in (self.flash_attention, self.mla, self.sparsity_mode, self.efficiency):
            w.layout.width = "auto"  # not the 300 px inline default, which wraps the buttons under the label
        knobs = {
            "attention": [self.flash_attention, self.fused, self.mla],
            "kv": [self.kv_keep_ratio, self.kv_budget],
            "speculative": [self.draft, self.gamma, self.acceptance, self.tokens_per_round],
            "early_exit": [self.early_exit_fraction],
            "sparsity": [self.sparsity_mode, self.sparsity_share],
            "offload": [self.offload_weights, self.offload_kv, self.offload_experts],
            "parallel": [self.tp, self.pp, self.ep],
            "efficiency": [self.efficiency, self.eff_custom],
        }
        children = []
        for key in ORDER:
            box = W.VBox([_desc(SECTIONS[key][1]), *knobs[key]], layout=_full())
            box.add_class("lr-tech-section")
            box.add_class(f"lr-tech-{key}")
            children.append(box)
        self.section_boxes = dict(zip(ORDER, children))
        self.sections = W.Accordion(
            children=children, titles=tuple(SECTIONS[k][0] for k in ORDER), selected_index=None, layout=_full()
        )
        self.sections.add_class("lr-tech-sections")
        self.reset = W.Button(
            description="reset",
            icon="undo",
            layout=W.Layout(width="auto", flex="0 0 auto"),
            tooltip="reset every technique knob to the engine's default (the plain analysis)",
        )
        self.reset.add_class("lr-tech-reset")
        # our own text only (knob names), wrapped
        self.summary = W.HTML(layout=W.Layout(flex="1 1 auto", min_width="0"))
        self.summary.add_class("lr-tech-summary")
        head = W.HBox([self.summary, self.reset], layout=_full(align_items="center"))
        self.box = W.VBox([head, self.sections], layout=_full())
        self.box.add_class("lr-tech-panel")

        # widget -> state
        simple = {
            "flash_attention": self.flash_attention,
            "fused": self.fused,
            "mla": self.mla,
            "kv_keep_ratio": self.kv_keep_ratio,
            "early_exit_fraction": self.early_exit_fraction,
            "tp": self.tp,
            "pp": self.pp,
            "ep": self.ep,
        }
        for name, w in simple.items():
            w.observe(self._knob(name), names="value")
        self.kv_budget.observe(self._knob("kv_budget", lambda v: v or None), names="value")
        for w in (self.draft, self.gamma, self.acceptance):
            w.observe(self._speculative_to_state, names="value")
        for w in (self.sparsity_mode, self.sparsity_share):
            w.observe(self._sparsity_to_state, names="value")
        for w in (self.offload_weights, self.offload_kv, self.offload_experts):
            w.observe(self._offload_to_state, names="value")
        for w in (self.efficiency, self.eff_compute, self.eff_memory, self.eff_comm):
            w.observe(self._efficiency_to_state, names="value")
        self.reset.on_click(lambda _b: self.state.update(**{name: d for name, d in KNOBS.items()}))
        # state -> widget
        self.state.observe(self._from_state, names=["extra", "result"])
        self._from_state()

    # -- widget -> state -------------------------------------------------------------------------
    def _knob(self, name, convert=None):
        def handler(change):
            if not self._guard:
                v = change["new"]
                self.state.update(**{name: convert(v) if convert else v})

        return handler

    @staticmethod
    def _draft_options():
        return [("off", OFF), ("mtp (the target's MTP head)", "mtp")] + [(m, m) for m in list_models()]

    def _speculative_value(self):
        d = self.draft.value
        if d == OFF:
            return None
        draft = self._custom_draft if d == CUSTOM_DRAFT else d
        return Speculative(draft=draft, gamma=int(self.gamma.value), acceptance=float(self.acceptance.value))

    def _speculative_to_state(self, change=None):
        if self._guard:
            return
        self._enable_speculative()
        self.state.update(speculative=self._speculative_value())

    def _sparsity_to_state(self, change=None):
        if self._guard:
            return
        mode = self.sparsity_mode.value
        self.sparsity_share.disabled = mode != "unstructured"
        value = None if mode == "none" else "2:4" if mode == "2:4" else float(self.sparsity_share.value)
        self.state.update(sparsity=value)

    def _offload_to_state(self, change=None):
        if self._guard:
            return
        off = {
            "weights": self.offload_weights.value,
            "kv_cache": self.offload_kv.value,
            "experts": self.offload_experts.value,
        }
        off = {k: float(v) for k, v in off.items() if v}
        self.state.update(offload=off or None)

    def _efficiency_to_state(self, change=None):
        if self._guard:
            return
        mode = self.efficiency.value
        self.eff_custom.layout.display = "flex" if mode == "custom" else "none"
        if mode == "custom":
            value = {
                "compute": float(self.eff_compute.value),
                "memory": float(self.eff_memory.value),
                "communication": float(self.eff_comm.value),
            }
        else:
            value = None if mode == "roofline" else "calibrated"
        self.state.update(efficiency=value)

    # -- state -> widget -------------------------------------------------------------------------
    @staticmethod
    def _set(widget, value):
        try:
            if widget.value != value:
                widget.value = value
        except traitlets.TraitError:
            pass  # a value this control cannot show: the error area explains it

    def _enable_speculative(self):
        off = self.draft.value == OFF
        self.gamma.disabled = self.acceptance.disabled = off
        if off:
            self.tokens_per_round.value = ""
        else:
            sp = Speculative(gamma=int(self.gamma.value), acceptance=float(self.acceptance.value))
            self.tokens_per_round.value = (
                f"expected tokens per round: {sp.tokens_per_round:.3g} (of γ + 1 = {sp.gamma + 1})"
            )

    def _from_state(self, change=None):
        if self._guard:
            return
        st = self.state
        kn = st.knobs()
        self._guard = True
        try:
            for name in ("flash_attention", "fused", "mla", "kv_keep_ratio", "early_exit_fraction", "tp", "pp", "ep"):
                self._set(getattr(self, name), kn[name])
            self._set(self.kv_budget, kn["kv_budget"] or 0)
            # speculative
            sp = kn["speculative"]
            if isinstance(sp, Speculative):
                draft = sp.draft
                if isinstance(draft, str) and draft in dict((v, v) for _, v in self.draft.options):
                    self._set(self.draft, draft)
                else:  # a config or a model outside the catalog: keep it as a custom option
                    self._custom_draft = draft
                    name = (
                        draft
                        if isinstance(draft, str)
                        else getattr(draft, "name", None)
                        or (draft.get("name") if isinstance(draft, dict) else None)
                        or "custom draft"
                    )
                    opts = [o for o in self.draft.options if o[1] != CUSTOM_DRAFT]
                    self.draft.options = [*opts, (f"custom: {name}", CUSTOM_DRAFT)]
                    self._set(self.draft, CUSTOM_DRAFT)
                self._set(self.gamma, sp.gamma)
                self._set(self.acceptance, sp.acceptance)
            else:
                self._set(self.draft, OFF)
            self._enable_speculative()
            # sparsity
            s = kn["sparsity"]
            if s is None:
                self._set(self.sparsity_mode, "none")
            elif s == "2:4":
                self._set(self.sparsity_mode, "2:4")
            else:
                self._set(self.sparsity_mode, "unstructured")
                self._set(self.sparsity_share, s)
            self.sparsity_share.disabled = self.sparsity_mode.value != "unstructured"
            # offloading
            off = kn["offload"] if isinstance(kn["offload"], dict) else {}
            self._set(self.offload_weights, off.get("weights", 0.0))
            self._set(self.offload_kv, off.get("kv_cache", 0.0))
            self._set(self.offload_experts, off.get("experts", 0.0))
            # efficiency
            eff = kn["efficiency"]
            if eff == "calibrated":
                self._set(self.efficiency, "calibrated")
            elif isinstance(eff, dict) and eff:
                self._set(self.efficiency, "custom")
                self._set(self.eff_compute, eff.get("compute", 1.0))
                self._set(self.eff_memory, eff.get("memory", 1.0))
                self._set(self.eff_comm, eff.get("communication", 1.0))
            else:
                self._set(self.efficiency, "roofline")
            self.eff_custom.layout.display = "flex" if self.efficiency.value == "custom" else "none"
            # knobs that only apply to some models
            r = st.result
            if r is not None:
                m = r.model
                self.offload_experts.disabled = not m.is_moe and not off.get("experts")
                self.mla.disabled = (
                    not any(lt.attention is not None and lt.attention.kind == "mla" for lt in m.layer_types)
                    and kn["mla"] == "absorbed"
                )
            self.summary.value = self._summary(kn)
        finally:
            self._guard = False

    def active(self) -> list[str]:
        """Names of the knobs that differ from the plain analysis."""
        return [k for k in KNOBS if k in self.state.extra]

    def _summary(self, kn) -> str:
        on = self.active()
        style = "font-size: 12px; line-height: 1.3; white-space: normal"
        if not on:
            return f'<div class="lr-tech-summary-text" style="{style}">no technique: the plain analysis</div>'
        names = html.escape(", ".join(on))
        return f'<div class="lr-tech-summary-text" style="{style}"><b>{len(on)} active</b>: {names}</div>'

    def close(self):
        try:
            self.state.unobserve(self._from_state, names=["extra", "result"])
        except ValueError:
            pass
        self.box.close()
