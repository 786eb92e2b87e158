"""Human motion end to end: masked diffusion over VQ motion tokens of the 15 DeepMimic clips.

`task.py` is the task registered as `motion` (data, tokenizer, the class-conditional model and
its variants, evaluation), `data.py` the clips as labelled windows and their sentences,
`text.py` the sentences as MiniLM vectors, `importance.py` the per-token priority scores,
`classifier.py` the judge of samples, `metrics.py` the physical figures (foot skating,
ground penetration, joint limits), `inbetween.py` the masks of motion in-betweening,
`pictures.py` the stick-figure GIFs, `kin.py` forward kinematics of pose features.
"""
