"""ZPE: zero-shot prompt weighting from unlabelled images (Allingham et al., ICML 2023).

"A Simple Zero-shot Prompt Weighting Technique to Improve Prompt Ensembling in Text-Image Models",
arXiv 2302.06235. For each prompt template p and class c the zero-shot logit of image x is
l_pc(x) = logit_scale * <z_img(x), z_txt(p, c)>. The paper's prompt score is the max-logit
confidence of the classifier that uses prompt p alone, averaged over the unlabelled test images,
after removing two biases from every logit (the paper's final "ZPE" score):

    s_p = mean_x  max_c [ l_pc(x) - 1/2 * ( E_{x'~pretrain}[l_pc(x')] + E_{x'~test}[l_pc(x')] ) ]
    w   = softmax_p(s)          (no temperature: the scores are in logit units)

The pre-training term corrects the word-frequency bias of a class name under a prompt (a prompt
whose class words are common in captions scores high on every image); the test term corrects
dataset-wide biases of the test images. (Equation numbers are not cited: the paper's text was not
at hand when this was written.) This transcription follows the authors' reference code
(google/uncertainty-baselines, experimental/multimodal notebook: `get_weights` with
debias_mode='both', img_mean=True, then `jax.nn.softmax` over prompts), where the logits are
logit_scale * cosine (their encoders scale both sides by sqrt(logit_scale)).

Stand-in for the pre-training sample: the paper uses 20k LAION-400m images. A user rarely has
such a sample, so when no `reference` embeddings are given the test images themselves stand in
for it, which makes the correction the plain test-set mean (the paper's "test-only" ablation).
`ZPEResult.bias_source` says in words which correction was used, so a page can show it.

Combining the prompts: as the authors do (the notebook's `agg_logits`), the class logit of an image
is the weighted average of its per-prompt logits, l_c(x) = sum_p w_p * l_pc(x), which is the logit
of the weighted mean of the unit prompt embeddings, NOT renormalised (`evaluate.class_embeddings`;
`zeroshot.ensemble(..., renormalise=False)`). `evaluate.class_embeddings` makes the combination for
every weighting, and every ZPE score goes through it: `evaluate` (eval --weighting zpe, the Prompt
lab's labelled and unlabelled runs, the comparison rows). The "cosine" of a ZPE class is then the
weighted mean of the image's cosines with the class's prompts (evaluate.cosine_meaning says so on the
page and in the JSON), and the probabilities are the model's rule applied to the averaged logits.
Two departures from the notebook, neither of which moves a prediction: `agg_logits` multiplies by
weights that sum to 1 and then takes the mean over the prompts, so its logits are 1/T of the
weighted average (the notebook reports accuracy only); here the weights sum to 1 and the logits stay
at the model's own scale, so probabilities and calibration are the model's. And with MAD selection
(below) the kept weights are renormalised to sum to 1.
The variant used here before (renormalising the weighted mean per class, open_clip's convention,
which equal weighting keeps) differs from the authors' by a per-class scale and so does move
predictions: measured on the project's shapes model (24 classes, 4 seeds x 600 images, OpenAI's 80
templates) 8 of 2,400 predictions differ at 32 px (0.33%; 11, 0.46%, with MAD selection), 2 of
2,400 at 64 px (0.08%), none with the 7 templates; accuracy 96.42% (authors') vs 96.58% at 32 px,
McNemar p = 0.29 (2 images right only the authors' way, 6 only the other), so no reliable gain.
It is not offered as an option; `zeroshot.ensemble(prompt_emb, zpe_result.weights)` still computes it.

Prompt selection (the paper's "ZPE (prompt selection)" rows, its headline numbers): before the
weighting, keep only the prompts whose score is an upward outlier by the median absolute deviation,

    keep p  iff  (s_p - median(s)) / MAD(s) > threshold,   MAD(s) = median(|s - median(s)|)

a transcription of the notebook's `mad_method` (scipy's `median_abs_deviation` at its default
scale 1, a strict `>`, upward only). The kept prompts are weighted by the softmax of their scores
(the notebook takes the softmax over all prompts and keeps the selected ones' weights; the
renormalisation to sum 1 scales every logit by one constant, which no prediction sees, and keeps
the logits at the model's scale). The notebook's
tables use threshold 0.5 for ImageNet and its variants and 2.0 for the fine-grained datasets;
0.5 is the default here. When MAD is 0, prompts above the median divide to +inf and are kept,
as numpy does in the notebook. When no prompt passes, the notebook has no classifier and scores
0%; here the best-scoring prompt is kept instead, and `ZPEResult.selection` says so.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAD_THRESHOLD = 0.5  # the notebook's ImageNet tables (its fine-grained tables use 2.0)
BIAS_TEST_ONLY = ("test images only: no pre-training image sample was given, so the mean logit over "
                  "the test images stands in for the pre-training mean (the paper's test-only correction)")
_CHUNK = 2048  # images per block when forming [N, C, T] logits


@dataclass
class ZPEResult:
    """Per-prompt ZPE scores and weights, and how the logits were de-biased."""
    weights: np.ndarray   # [T] softmax of the scores, summing to 1 (zero where a prompt was not selected)
    scores: np.ndarray    # [T] bias-corrected mean max-logit scores (logit units)
    bias_source: str      # one sentence for people: which images corrected the bias
    selected: np.ndarray  # [T] bool: prompts kept (all True unless MAD selection was asked for)
    selection: str = "all prompts"   # one sentence for people: which prompts the weights use
    mad_threshold: float | None = None   # None: no selection

    def as_dict(self) -> dict:
        return {"weights": self.weights.tolist(), "scores": self.scores.tolist(),
                "bias_source": self.bias_source, "selected": self.selected.tolist(),
                "select": "all" if self.mad_threshold is None else "mad", "mad_threshold": self.mad_threshold,
                "selection": self.selection}


def _check(image_emb: np.ndarray, prompt_emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image_emb = np.asarray(image_emb, dtype=np.float32)
    prompt_emb = np.asarray(prompt_emb, dtype=np.float32)
    if prompt_emb.ndim != 3:
        raise ValueError(f"prompt embeddings must be [classes, prompts, dim], got shape {prompt_emb.shape}")
    if image_emb.ndim != 2 or image_emb.shape[1] != prompt_emb.shape[2]:
        raise ValueError(
            f"image embeddings must be [images, {prompt_emb.shape[2]}], got shape {image_emb.shape}")
    return image_emb, prompt_emb


def mean_logits(image_emb: np.ndarray, prompt_emb: np.ndarray, logit_scale: float) -> np.ndarray:
    """E_x[l_pc(x)] as a [C, T] array. Logits are linear in the image, so this is the logit of the
    mean image embedding: no [N, C, T] tensor is needed."""
    image_emb, prompt_emb = _check(image_emb, prompt_emb)
    return logit_scale * (prompt_emb @ image_emb.mean(axis=0))


def zpe_scores(image_emb: np.ndarray, prompt_emb: np.ndarray, logit_scale: float,
               reference_emb: np.ndarray | None = None) -> np.ndarray:
    """s_p for every prompt ([T]); see the module docstring for the formula.

    image_emb [N, D]: the unlabelled test images. prompt_emb [C, T, D]: normalised prompt
    embeddings, class-major. reference_emb [M, D] or None: a sample standing in for pre-training
    images; None uses the test images (test-only correction).
    """
    image_emb, prompt_emb = _check(image_emb, prompt_emb)
    if len(image_emb) == 0:
        raise ValueError("ZPE needs at least one unlabelled image to score the prompts")
    test_mean = mean_logits(image_emb, prompt_emb, logit_scale)                      # [C, T]
    if reference_emb is None or len(reference_emb) == 0:
        bias = test_mean
    else:
        bias = 0.5 * (mean_logits(reference_emb, prompt_emb, logit_scale) + test_mean)
    classes, prompts, dim = prompt_emb.shape
    flat = prompt_emb.reshape(classes * prompts, dim).T                             # [D, C*T]
    total = np.zeros(prompts, dtype=np.float64)
    for start in range(0, len(image_emb), _CHUNK):
        logits = logit_scale * (image_emb[start:start + _CHUNK] @ flat)            # [n, C*T]
        centred = logits.reshape(-1, classes, prompts) - bias                       # [n, C, T]
        total += centred.max(axis=1).sum(axis=0)
    return (total / len(image_emb)).astype(np.float32)


def mad_rule(scores: np.ndarray, threshold: float = MAD_THRESHOLD) -> np.ndarray:
    """The paper's selection rule exactly (see the module docstring): a bool mask of the prompts
    with (s - median) / MAD > threshold. May be empty."""
    scores = np.asarray(scores, dtype=np.float64)
    median = np.median(scores)
    mad = np.median(np.abs(scores - median))
    with np.errstate(divide="ignore", invalid="ignore"):
        return (scores - median) / mad > threshold   # 0/0 is nan (not kept), x/0 is +inf (kept)


def mad_select(scores: np.ndarray, threshold: float = MAD_THRESHOLD) -> np.ndarray:
    """`mad_rule`, never empty: if no prompt passes, the best-scoring one is kept."""
    keep = mad_rule(scores, threshold)
    if not keep.any():
        keep[int(np.argmax(scores))] = True
    return keep


def softmax_weights(scores: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """softmax over the kept prompts' scores; prompts not kept get weight 0."""
    scores = np.asarray(scores, dtype=np.float64)
    keep = np.ones(len(scores), dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    weights = np.zeros(len(scores))
    kept = scores[keep]
    e = np.exp(kept - kept.max())
    weights[keep] = e / e.sum()
    return weights.astype(np.float32)


def zpe_weights(image_emb: np.ndarray, prompt_emb: np.ndarray, logit_scale: float,
                reference_emb: np.ndarray | None = None, reference_name: str | None = None,
                mad_threshold: float | None = None) -> ZPEResult:
    """ZPE weights for the T prompts of `prompt_emb` [C, T, D] from unlabelled `image_emb` [N, D].

    `reference_emb` [M, D]: images standing in for the pre-training sample (e.g. an indexed folder
    of everyday photos); `reference_name` describes them for `bias_source`. `mad_threshold`: keep
    only prompts scoring that many MADs above the median before the softmax (None keeps all).
    """
    scores = zpe_scores(image_emb, prompt_emb, logit_scale, reference_emb)
    keep = None if mad_threshold is None else mad_select(scores, mad_threshold)
    selection = "all prompts" if keep is None else _selection_text(scores, keep, mad_threshold)
    weights = softmax_weights(scores, keep)
    if reference_emb is None or len(reference_emb) == 0:
        source = BIAS_TEST_ONLY
    else:
        what = reference_name or "a reference image sample"
        source = (f"{len(reference_emb)} reference images ({what}) stand in for the pre-training sample; "
                  "the correction averages their mean logit with the test images' mean logit")
    selected = np.ones(len(scores), dtype=bool) if keep is None else keep
    return ZPEResult(weights, scores, source, selected, selection, mad_threshold)


def _selection_text(scores: np.ndarray, keep: np.ndarray, threshold: float) -> str:
    rule = f"MAD selection (score more than {threshold:g} median absolute deviations above the median)"
    if not mad_rule(scores, threshold).any():
        return f"{rule}: no prompt passed, so only the best-scoring one is kept"
    return f"{rule}: {int(keep.sum())} of {len(keep)} prompts kept"
