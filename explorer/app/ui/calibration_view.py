"""The Prompt lab's calibration view: on a labelled folder, are the probabilities the page shows right
as often as they claim? A reliability diagram and the expected calibration error, before and after a
temperature, with the temperature fitted on the same images.

`calibration_view` is the handler (the run's flags state and a temperature in, HTML and a figure
out); `build` lays out the accordion and wires it onto the Prompt lab's components. The numbers come
from explorer/science/calibration.py, computed from the cosines of the lab's last run: nothing is
encoded. The flags are the Prompt lab's prompt_lab_html.LabFlags (this view reads its `calibration`:
a CalibrationData, None for unlabelled images); tabs do not import each other, so it is not named
here.
"""
from __future__ import annotations

import html

import gradio as gr

from explorer.app import plots
from explorer.science.calibration import N_BINS, calibrate

from .common import message

T_SLIDER = (0.1, 10.0)  # within calibration.T_RANGE, where the fit searches
LIMITS = ("Limits: temperature scaling only rescales confidence. It never changes which label wins, so "
          "accuracy and the ranking stay as they are and a confusion cannot be fixed by it; and a single "
          "temperature degrades as classes overlap (near-synonym labels, ambiguous pictures need a softer "
          "confidence than clean ones, and one global T cannot give both).")


def calibration_view(flags, temperature: float):
    """(HTML, figure or None) for the last run (its LabFlags, or None before a run) at `temperature`."""
    if not flags:
        return "", None
    data = flags.calibration
    if not data:
        return message(
            "Calibration needs labelled images (one sub-folder per class): without labels there is "
            "nothing to check the probabilities against."), None
    report = calibrate(data.cosines, data.true_idx, data.scoring, float(temperature))
    kind = report.kind
    figure = plots.reliability_diagram(
        [(f"as shipped (T = 1): ECE {report.model.ece:.1%}", report.model),
         (f"at T = {report.temperature:.2f}: ECE {report.scaled.ece:.1%}", report.scaled)],
        confidence_label=f"confidence: top label's {kind} probability")
    return _text(report), figure


def _text(report) -> str:
    fitted = report.fitted_temperature
    outside = "" if T_SLIDER[0] <= fitted <= T_SLIDER[
        1] else f" (outside the slider's {T_SLIDER[0]}–{T_SLIDER[1]})"
    if report.fitted_at_bound:
        outside += (
            ", the end of the range searched: the likelihood keeps improving that way (as when every top "
            "label is right), so this is a bound, not a minimum")
    return (
        f'<div id="pl-cal-numbers"><p><b>ECE</b> as shipped (T = 1): <b id="pl-cal-ece-model">'
        f'{report.model.ece:.2%}</b> · at T = {report.temperature:.2f}: <b id="pl-cal-ece">'
        f'{report.scaled.ece:.2%}</b> · at the fitted T = <b id="pl-cal-fitted">{fitted:.2f}</b>{outside}: '
        f'{report.fitted.ece:.2%}. '
        f"Negative log-likelihood {report.nll_model:.3f} → {report.nll_scaled:.3f} (fitted: "
        f"{report.nll_fitted:.3f}); top-1 accuracy {report.accuracy:.1%} at every T.</p>"
        f'<p class="explorer-muted">Confidence is {html.escape(report.confidence_is)}. {report.model.n} '
        f"images in {N_BINS} equal-width bins; ECE = Σ (images in bin / all) × |accuracy − mean confidence| "
        "(Guo et al. 2017, On Calibration of Modern Neural Networks). The temperature divides the logits "
        "(scale × cosine"
        + (" + bias" if report.kind == "sigmoid" else "") + ") before the "
        f"{report.kind}. The fitted T minimises the negative log-likelihood on these same images, so its "
        "ECE is optimistic: check a temperature on other labelled images before trusting it.</p>"
        f'<p class="explorer-note" id="pl-cal-limits">{html.escape(LIMITS)}</p></div>')


def fitted_temperature(flags, current: float):
    """The slider value for "use the fitted temperature" (unchanged without labelled images); `flags`:
    the last run's LabFlags, or None."""
    data = flags.calibration if flags else None
    if not data:
        return current
    fitted = calibrate(data.cosines, data.true_idx, data.scoring).fitted_temperature
    return round(min(max(fitted, T_SLIDER[0]), T_SLIDER[1]), 2)


def build(ctx, ui) -> None:
    """The accordion, under the Prompt lab's results; `ui` holds the lab's components (flags, run)."""
    with gr.Accordion("Calibration: are the probabilities right as often as they say?", open=False,
                      elem_id="pl-calibration"):
        gr.Markdown(
            "On a labelled folder: group the images by the probability of their top label and compare "
            "with how often that label is right. A calibrated model's bars sit on the diagonal. Move the "
            "temperature to see what rescaling the logits does.", elem_id="pl-cal-intro")
        with gr.Row():
            temperature = gr.Slider(*T_SLIDER, value=1.0, step=0.05,
                                    label="Temperature T (logits ÷ T; 1 = the model "
                                    "as shipped)", elem_id="pl-cal-t", scale=4)
            use_fitted = gr.Button("Use the fitted temperature", elem_id="pl-cal-fit", scale=1)
        text = gr.HTML(elem_id="pl-cal-text")
        # the figure has its own title: no label badge above it
        plot = gr.Plot(label="Reliability diagram", show_label=False, elem_id="pl-cal-plot")
    ui.flags.change(calibration_view, [ui.flags, temperature], [text, plot], show_progress="hidden")
    temperature.change(calibration_view, [ui.flags, temperature], [text, plot], show_progress="hidden")
    use_fitted.click(fitted_temperature, [ui.flags, temperature], temperature)
