"""Engine: pre (decode) -> core (batcher + tower) -> post (matching); see ARCHITECTURE.md."""
