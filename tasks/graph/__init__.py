"""Graph generation end to end: masked diffusion over adjacency tokens of SBM and planar graphs.

`task.py` is the task registered as `graph` (data, conditions, model, evaluation), `data.py` the
graphs in a canonical node order with their families, `conditions.py` requests and condition
vectors, `tokens.py` the token layout's given tokens, constraint and forgiving decoder,
`metrics.py` MMD² and V.U.N., `validity.py` the planar and SBM validity tests, `planarity.py`
the planarity-constrained decoding processor.
"""
