"""The resident model and what turns pixels and words into vectors: loading any open_clip identifier,
the scoring rule, tokens, safe image decoding, caches, GPU helpers. Imports nothing above it."""
