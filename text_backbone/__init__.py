"""MiniMax-Text-01 hybrid lightning/softmax MoE backbone."""
