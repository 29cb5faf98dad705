"""Organization scale: iamtrim's aggregation computed by an engine (Spark, Athena), then normalized.

``reduce`` defines, once, the reduction every engine computes and stores its rows with the same
normalizer and folding as a local ingest (docs/scale.md).
"""
