"""The tokenizer: a `tokenizer.json` read with the `tokenizers` library, plus MiniMax-VL-01's special tokens.

The released model's own `tokenizer.json` loads the same way when a user has it; the small presets use the
byte-level BPE shipped in `minimax_vl/assets/tokenizer.json` (rebuilt by `python -m training.data.tokenizer`).
"""
from __future__ import annotations

import functools
from pathlib import Path

from tokenizers import Tokenizer

from minimax_vl.chat_template import BOS, EOD, EOS, IMAGE

ASSETS = Path(__file__).parent / "assets"
SHIPPED_TOKENIZER = ASSETS / "tokenizer.json"


class MiniMaxTokenizer:
    """Thin wrapper: encode/decode without implicit special tokens, and the ids generation needs."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.backend = tokenizer
        missing = [t for t in (BOS, EOS, IMAGE) if tokenizer.token_to_id(t) is None]
        if missing:
            raise ValueError(f"tokenizer lacks MiniMax-VL-01's special tokens {missing}; add them as special tokens")
        self.bos_token_id = tokenizer.token_to_id(BOS)
        self.eos_token_id = tokenizer.token_to_id(EOS)
        self.image_token_id = tokenizer.token_to_id(IMAGE)
        eod = tokenizer.token_to_id(EOD)
        self.pad_token_id = eod if eod is not None else self.eos_token_id

    @classmethod
    def from_file(cls, path: str | Path) -> "MiniMaxTokenizer":
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.exists():
            raise FileNotFoundError(f"no tokenizer.json at {path}")
        return cls(Tokenizer.from_file(str(path)))

    def save(self, directory: str | Path) -> None:
        from text_backbone.weights_io import atomic_write_text

        atomic_write_text(Path(directory) / "tokenizer.json", self.backend.to_str())

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)


@functools.lru_cache(maxsize=1)
def shipped_tokenizer() -> MiniMaxTokenizer:
    if not SHIPPED_TOKENIZER.exists():
        raise FileNotFoundError(
            f"the shipped tokenizer {SHIPPED_TOKENIZER} is missing; rebuild it with "
            "`python -m training.data.tokenizer --out minimax_vl/assets/tokenizer.json`"
        )
    return MiniMaxTokenizer.from_file(SHIPPED_TOKENIZER)
