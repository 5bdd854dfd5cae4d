"""Synthetic image–language data for the four training stages (SPEC_NOTES §7.2), and its plumbing.

    generators   charts.py + chart_layout.py + chart_questions.py, maps.py + map_questions.py, text_only.py
    samples      samples.py (GeneratorConfig, make_sample, iter_samples, STAGE_MIXES), splits.py, vocab.py, styles.py
    files        formats.py (LLaVA / ShareGPT readers and writers), generate.py (the dataset CLI)
    tokens       tokenizer.py (the shipped BPE), encoding.py (encode_conversation), collate.py (padding, packing)

Scoring lives in `minimax_vl.evaluation` so that evaluation needs no training code.
"""
