"""The seeds' methods on embeddings, each as its authors compute it: zero-shot, prompts, ZPE, CuPL,
evaluation and evidence, calibration, heatmaps, the modality gap, few-shot. Imports index/, inputs/,
embed/."""
