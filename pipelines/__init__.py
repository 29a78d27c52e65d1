"""Generation: routing, pipelines, sampling, Harmony, providers. Knows nothing of HTTP."""
