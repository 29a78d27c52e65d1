"""Model providers: where pieces come from (llama.cpp, stub, replay, upstream HTTP)."""
