"""Training's side of the data: from conversations to batches, and the dataset CLI.

    tokens       tokenizer.py (trains the shipped BPE), encoding.py (encode_conversation: ids + labels),
                 collate.py (padding, packing)
    files        generate.py (`python -m training.data.generate`: LLaVA-format datasets on disk)

The generators, question templates, splits, file formats and the scorer are in `minimax_vl.data`, which the model
side uses too (SPEC_NOTES §7.2 for the stages the samples are built for).
"""
