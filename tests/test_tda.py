"""TDA's stream against a direct transcription of the authors' code (github.com/kdiAAA/TDA)."""
import math
import operator

import numpy as np
import pytest

from explorer.science.tda import TDAParams, tda_logits

# configs/imagenet.yaml
POS = {"enabled": True, "shot_capacity": 3, "alpha": 2.0, "beta": 5.0}
NEG = {"enabled": True, "shot_capacity": 2, "alpha": 0.117, "beta": 1.0,
       "entropy_threshold": {"lower": 0.2, "upper": 0.5}, "mask_threshold": {"lower": 0.03, "upper": 1.0}}


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _logsumexp(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def softmax_entropy(x):                                   # utils.py softmax_entropy
    return -(_softmax(x) * np.log(_softmax(x))).sum(1)


def avg_entropy(outputs):                                 # utils.py avg_entropy
    logits = outputs - _logsumexp(outputs, -1)[:, None]
    avg_logits = _logsumexp(logits, 0) - np.log(logits.shape[0])
    return -(avg_logits * np.exp(avg_logits)).sum(-1)


def get_clip_logits(image_features, clip_weights, scale, share):
    """utils.py get_clip_logits on already-normalised features [V, D]; clip_weights [D, C]."""
    clip_logits = scale * image_features @ clip_weights
    if image_features.shape[0] > 1:
        batch_entropy = softmax_entropy(clip_logits)
        selected_idx = np.argsort(batch_entropy, kind="stable")[:int(batch_entropy.shape[0] * share)]
        output = clip_logits[selected_idx]
        image_features = image_features[selected_idx].mean(0)[None]
        clip_logits = output.mean(0)[None]
        loss = avg_entropy(output)
        prob_map = _softmax(output).mean(0)[None]
        pred = int(output.mean(0).argmax())
    else:
        loss = softmax_entropy(clip_logits)[0]
        prob_map = _softmax(clip_logits)
        pred = int(clip_logits.argmax())
    return image_features, clip_logits, loss, prob_map, pred


def update_cache(cache, pred, features_loss, shot_capacity, include_prob_map=False):   # tda_runner.py
    item = features_loss if not include_prob_map else features_loss[:2] + [features_loss[2]]
    if pred in cache:
        if len(cache[pred]) < shot_capacity:
            cache[pred].append(item)
        elif features_loss[1] < cache[pred][-1][1]:
            cache[pred][-1] = item
        cache[pred] = sorted(cache[pred], key=operator.itemgetter(1))
    else:
        cache[pred] = [item]


def compute_cache_logits(image_features, cache, alpha, beta, clip_weights, neg_mask_thresholds=None):
    cache_keys, cache_values = [], []                                                  # tda_runner.py
    for class_index in sorted(cache.keys()):
        for item in cache[class_index]:
            cache_keys.append(item[0])
            cache_values.append(item[2] if neg_mask_thresholds else class_index)
    cache_keys = np.concatenate(cache_keys, axis=0).T
    if neg_mask_thresholds:
        cache_values = np.concatenate(cache_values, axis=0)
        cache_values = ((cache_values > neg_mask_thresholds[0]) & (cache_values < neg_mask_thresholds[1])
                        ).astype(np.float64)
    else:
        cache_values = np.eye(clip_weights.shape[1])[cache_values]
    affinity = image_features @ cache_keys
    return alpha * np.exp((-1) * (beta - beta * affinity)) @ cache_values


def run_test_tda(features, clip_weights, scale, share=0.1):
    """tda_runner.py run_test_tda's loop, one image (or its [V, D] views) at a time, in order."""
    pos_cache, neg_cache, out, neg_updates = {}, {}, [], 0
    for views in features:
        image_features, clip_logits, loss, prob_map, pred = get_clip_logits(
            views.reshape(-1, clip_weights.shape[0]), clip_weights, scale, share)
        prop_entropy = float(loss / math.log2(clip_weights.shape[1]))                  # get_entropy
        update_cache(pos_cache, pred, [image_features, loss], POS["shot_capacity"])
        if NEG["entropy_threshold"]["lower"] < prop_entropy < NEG["entropy_threshold"]["upper"]:
            update_cache(neg_cache, pred, [image_features, loss, prob_map], NEG["shot_capacity"], True)
            neg_updates += 1
        final_logits = clip_logits.copy()
        if pos_cache:
            final_logits += compute_cache_logits(image_features, pos_cache, POS["alpha"], POS["beta"],
                                                 clip_weights)
        if neg_cache:
            final_logits -= compute_cache_logits(image_features, neg_cache, NEG["alpha"], NEG["beta"],
                                                 clip_weights, (NEG["mask_threshold"]["lower"],
                                                                NEG["mask_threshold"]["upper"]))
        out.append(final_logits[0])
    return np.stack(out), neg_updates


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def stream():
    rng = np.random.default_rng(7)
    classes = _unit(rng.normal(size=(5, 16)))
    # images near a class each, at varied distances: confident and unsure ones
    near = classes[rng.integers(0, 5, size=80)] * rng.uniform(0.0, 2.0, size=(80, 1))
    return _unit(near + rng.normal(size=(80, 16))), classes


@pytest.mark.parametrize("scale", [10.0, 100.0])
def test_stream_matches_their_runner(stream, scale):
    features, classes = stream
    theirs, neg_updates = run_test_tda(features, classes.T, scale)
    assert neg_updates > 0   # the negative cache's entropy band was exercised
    np.testing.assert_allclose(tda_logits(features, classes, scale), theirs, rtol=1e-9, atol=1e-9)
    assert not np.allclose(theirs, scale * features @ classes.T)   # the caches changed the logits


def test_views_are_filtered_and_averaged_as_their_get_clip_logits(stream):
    features, classes = stream
    rng = np.random.default_rng(3)
    views = _unit(features[:40, None, :] + 0.3 * rng.normal(size=(40, 20, 16)))   # 20 views: 2 kept
    theirs, neg_updates = run_test_tda(views, classes.T, 10.0)
    assert neg_updates > 0
    np.testing.assert_allclose(tda_logits(views, classes, 10.0), theirs, rtol=1e-9, atol=1e-9)


def test_defaults_are_their_imagenet_config_and_order_matters(stream):
    p = TDAParams()
    assert (p.positive_shots, p.positive_alpha, p.positive_beta) == (3, 2.0, 5.0)
    assert (p.negative_shots, p.negative_alpha, p.negative_beta) == (2, 0.117, 1.0)
    assert (p.entropy_lower, p.entropy_upper, p.mask_lower, p.mask_upper) == (0.2, 0.5, 0.03, 1.0)
    features, classes = stream
    forward = tda_logits(features, classes, 10.0)
    backward = tda_logits(features[::-1], classes, 10.0)[::-1]
    assert not np.allclose(forward, backward)   # a stream: what came before changes an image's logits
