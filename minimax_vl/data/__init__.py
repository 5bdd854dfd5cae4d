"""Generated chart and map VQA data, as a library that evaluation, the demos and training all use.

    scenes       charts.py + chart_layout.py, maps.py, words.py (text patches); drawing.py, styles.py (fonts, palettes)
    questions    chart_questions.py, map_questions.py (templates with exact answers), reading.py (transcriptions),
                 text_only.py, qa.py (the QA record, number formatting)
    samples      samples.py (GeneratorConfig, make_sample, iter_samples, STAGE_MIXES), splits.py (disjoint seed
                 ranges), vocab.py (label words per split)
    files        formats.py (Sample; LLaVA / ShareGPT readers and writers)
    scoring      scoring.py (relaxed accuracy, per-type reports)

Every sample is a pure function of (GeneratorConfig, index). The package needs PIL and two text formats,
`minimax_vl.chat_template` (`<image>`) and `minimax_vl.answers` (the read-first reply), nothing else from the
project: no torch, no model, no training code. It sits in `minimax_vl` so
that `minimax-vl eval` and the demos can generate and score data without importing `training`
(docs/ARCHITECTURE.md, "The dependency rule"); `training` imports it like any other user.
"""
