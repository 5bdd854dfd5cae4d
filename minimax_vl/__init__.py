"""MiniMax-VL-01 re-implementation."""
