"""Images end to end: class-conditional generation and inpainting over VQ image tokens.

`task.py` is the task registered as `image` (data, tokenizer, model, evaluation),
`classifier.py` the judge of samples, `metrics.py` the Fréchet proxy and diversity,
`inpainting.py` the masks and the measurement, `pictures.py` the figures.
"""
