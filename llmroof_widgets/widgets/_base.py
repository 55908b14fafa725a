"""Shared pieces of the views: the State hook-up and the selection trait."""

from __future__ import annotations

import numpy as np
import traitlets

from .state import State


def selection_from_json(value, widget=None) -> list[int]:
    """A selection from the front end as a list of ints.

    It may arrive as a JSON list, ``None``, a raw buffer (a JS typed array echoed as bytes) or a
    bqplot-style ``{"value": buffer, "dtype": ...}`` (pitfalls P8, P9).
    """
    if value is None:
        return []
    if isinstance(value, dict) and "value" in value:
        buf = value["value"]
        dtype = value.get("dtype", "uint32")
        return [int(v) for v in np.frombuffer(bytes(buf), dtype=dtype)]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return [int(v) for v in np.frombuffer(bytes(value), dtype="<u4")]
    return [int(v) for v in value]


def selection_trait():
    """``selected``: row indices of the table (at most one). Linked on the front end, so the kernel
    does not echo it back (``echo_update=False``, pitfall P8)."""
    return traitlets.List(traitlets.Int()).tag(sync=True, from_json=selection_from_json, echo_update=False)


def as_state(state) -> State:
    if isinstance(state, State):
        return state
    raise TypeError(
        f"expected an llmroof_widgets State, got {type(state).__name__}; "
        "create one with lr.State(model=..., hardware=...)"
    )


class StateView:
    """Mixin: observe a State's revision (and error) and refresh; detach on close()."""

    state: State

    def _attach(self, state: State, *, error: bool = False) -> None:
        self.state = as_state(state)
        self._data = None
        self.state.observe(self._on_revision, names=["revision"])
        if error:
            self.state.observe(self._on_error, names=["error"])
        self._watch_error = error

    def _on_revision(self, change=None) -> None:
        new = self.state.view_data()
        old = self._data
        self._refresh(old, new)
        self._data = new

    def _on_error(self, change=None) -> None:  # pragma: no cover - overridden where used
        pass

    def _refresh(self, old, new) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _detach(self) -> None:
        st = getattr(self, "state", None)
        if st is None:
            return
        try:
            st.unobserve(self._on_revision, names=["revision"])
            if getattr(self, "_watch_error", False):
                st.unobserve(self._on_error, names=["error"])
        except ValueError:
            pass

    @staticmethod
    def remap(old, new, index: int | None) -> int | None:
        """The row index in ``new`` of the operator at ``index`` in ``old`` (same phase, layer, name)."""
        if old is None or index is None:
            return None
        return new.index_of(old.key_of(index))
