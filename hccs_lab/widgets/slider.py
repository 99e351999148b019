"""A slider that never floods the kernel: at most one value in flight, the newest one next.

An ipywidgets slider with `continuous_update=True` sends every value a drag passes (one per mouse
move), and every message costs a kernel round trip plus JupyterLab's busy / idle handling; when
each value takes longer to show than the mouse takes to move, the values queue up and the figure
lags further and further behind the pointer. `FlowSlider` sends a value, then waits until the
kernel has handled it (the kernel answers "done" after every observer ran) before it sends the
newest value it has seen meanwhile. A drag therefore shows fresh values at whatever rate the
machine sustains, and the picture is never more than one step behind the pointer.

It looks and behaves like an ipywidgets slider (label, native range input with keyboard and
mouse, readout; `value`, `min`, `max`, `step`, `description`, `readout_format`), and its handle
carries `role=slider` and `aria-valuenow` like noUiSlider's.
"""
from __future__ import annotations

import anywidget
import traitlets as T

ESM = r"""
function fmt(v, f) {
  if (!f || f === 'd') return String(Math.round(v));
  const m = /^\.(\d+)f$/.exec(f);
  return m ? Number(v).toFixed(Number(m[1])) : String(v);
}
function render({ model, el }) {
  el.classList.add('widget-inline-hbox', 'widget-slider', 'widget-hslider', 'hccs-flow-slider');
  // arrow keys move the slider, not JupyterLab's cell selection
  el.setAttribute('data-lm-suppress-shortcuts', 'true');
  const label = document.createElement('label');
  label.className = 'widget-label';
  const input = document.createElement('input');
  input.type = 'range';
  input.className = 'hccs-flow-range';
  input.setAttribute('role', 'slider');
  input.setAttribute('data-lm-suppress-shortcuts', 'true');  // checked from the focused element up
  input.style.flex = '1 1 auto';
  input.style.minWidth = '60px';
  input.style.margin = '0 6px';
  const readout = document.createElement('div');
  readout.className = 'widget-readout';
  readout.style.minWidth = '4.5em';
  el.append(label, input, readout);
  let inFlight = false, pending = null, sentAt = 0;
  const show = (v) => {
    readout.textContent = fmt(v, model.get('readout_format'));
    input.setAttribute('aria-valuenow', String(v));
  };
  const sync = () => {
    label.textContent = model.get('description');
    label.title = model.get('description');
    label.style.width = model.get('description_width') || '';
    input.min = model.get('min'); input.max = model.get('max'); input.step = model.get('step');
    input.setAttribute('aria-valuemin', String(model.get('min')));
    input.setAttribute('aria-valuemax', String(model.get('max')));
    if (!inFlight && pending === null) input.value = model.get('value');
    show(pending !== null ? pending : model.get('value'));
  };
  const send = (v) => {
    inFlight = true; sentAt = performance.now();
    model.set('value', v);
    model.save_changes();
  };
  const onInput = () => {
    const v = Number(input.value);
    show(v);
    if (inFlight && performance.now() - sentAt < 2000) { pending = v; return; }
    pending = null;
    send(v);
  };
  input.addEventListener('input', onInput);
  model.on('msg:custom', (msg) => {
    if (!msg || msg.done === undefined) return;
    inFlight = false;
    if (pending !== null) { const v = pending; pending = null; send(v); }
  });
  for (const name of ['value', 'min', 'max', 'step', 'description', 'readout_format', 'description_width'])
    model.on('change:' + name, sync);
  sync();
}
export default { render };
"""

CSS = """
.hccs-flow-slider { align-items: center; }
.hccs-flow-slider .hccs-flow-range { accent-color: var(--jp-brand-color1, #1976d2); height: 1.2em; }
.hccs-flow-slider .widget-readout { text-align: left; font-variant-numeric: tabular-nums; }
"""


class _FlowSlider(anywidget.AnyWidget):
    _esm = ESM
    _css = CSS
    description = T.Unicode("").tag(sync=True)
    description_width = T.Unicode("").tag(sync=True)
    readout_format = T.Unicode("d").tag(sync=True)

    def set_state(self, sync_data):
        """A value from the browser: let every observer run, then tell the browser it may send the next."""
        super().set_state(sync_data)
        if "value" in sync_data:
            self.send({"done": True})

    @T.validate("value")
    def _clamp(self, proposal):
        v = proposal["value"]
        return min(max(v, self.min), self.max)


class FlowIntSlider(_FlowSlider):
    """An integer slider with flow control (see the module docstring)."""

    value = T.Int(0).tag(sync=True)
    min = T.Int(0).tag(sync=True)
    max = T.Int(100).tag(sync=True)
    step = T.Int(1).tag(sync=True)


class FlowFloatSlider(_FlowSlider):
    """A float slider with flow control (see the module docstring)."""

    value = T.Float(0.0).tag(sync=True)
    min = T.Float(0.0).tag(sync=True)
    max = T.Float(1.0).tag(sync=True)
    step = T.Float(0.01).tag(sync=True)
    readout_format = T.Unicode(".2f").tag(sync=True)
