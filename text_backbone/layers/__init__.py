"""Building blocks of the MiniMax-Text-01 decoder (ops -> layers -> model)."""
