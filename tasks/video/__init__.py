"""Video end to end: one masked-diffusion model over Moving-MNIST tokens for generation,
prediction, interpolation and completion.

`task.py` is the task registered as `video` (data, tokenizer, model, evaluation), `uses.py`
the four uses as given-token masks on the spatio-temporal grid, `layouts.py` where each use's
given part lies in each tokenizer's stream (the grid's, or the sprite tokenizer's, whose
completion is steered by the visible pixels), `metrics.py` PSNR / SSIM, the baselines and the digit
crops the judge reads, `pictures.py` the strips and GIFs.
"""
