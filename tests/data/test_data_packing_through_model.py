"""Packed batches give the same per-document loss as padded ones, through the text backbone (SPEC_NOTES §7.5)."""
import torch
import torch.nn.functional as F

from minimax_vl.data.samples import GeneratorConfig, make_sample
from minimax_vl.tokenizer import shipped_tokenizer
from text_backbone.config import MiniMaxText01Config
from text_backbone.model import MiniMaxText01ForCausalLM
from training.data.collate import PackingCollator, PaddingCollator
from training.data.encoding import encode_conversation


def _per_document_losses(logits, labels, starts, lengths):
    """Sum of next-token CE inside each document [start, start + length) of a flattened row."""
    losses = []
    for start, length in zip(starts, lengths):
        doc_logits = logits[start : start + length - 1]
        doc_targets = labels[start + 1 : start + length]
        losses.append(F.cross_entropy(doc_logits, doc_targets, ignore_index=-100, reduction="sum"))
    return torch.stack(losses)


def test_packed_and_padded_documents_have_equal_losses():
    tokenizer = shipped_tokenizer()
    config = GeneratorConfig(split="val", sample_kinds=(("text_only", 1.0),))
    examples = []
    for i in range(6):
        ids, labels = encode_conversation(make_sample(config, i).messages, tokenizer, [])
        examples.append({"input_ids": ids, "labels": labels})
    torch.manual_seed(0)
    model = MiniMaxText01ForCausalLM(MiniMaxText01Config.from_preset("tiny", vocab_size=tokenizer.vocab_size)).double()
    model.eval()

    lengths = [len(e["input_ids"]) for e in examples]
    packed = PackingCollator(max_length=sum(lengths) + 7, pad_token_id=tokenizer.pad_token_id)(examples)
    assert packed["input_ids"].shape[0] == 1  # everything fits one row (plus a pad tail segment)
    out = model(packed["input_ids"], cu_seqlens=packed["cu_seqlens"], position_ids=packed["position_ids"])
    starts = packed["cu_seqlens"][:-2].tolist()  # the last segment is the pad tail
    packed_losses = _per_document_losses(out.logits[0], packed["labels"][0], starts, lengths)

    padded = PaddingCollator(pad_token_id=tokenizer.pad_token_id)(examples)
    out = model(padded["input_ids"], attention_mask=padded["attention_mask"])
    padded_losses = torch.stack([
        _per_document_losses(out.logits[row], padded["labels"][row], [0], [length])[0]
        for row, length in enumerate(lengths)
    ])
    assert (padded_losses > 0).all()
    # float64 end to end: only summation order differs between the two layouts.
    torch.testing.assert_close(packed_losses, padded_losses, rtol=1e-9, atol=1e-9)
