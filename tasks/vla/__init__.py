"""Robot manipulation groundwork for a vision-language-action policy (MetaWorld MT10).

`env.py` names the tasks, their instructions and builds the environments,
`render.py` is the fast offscreen camera renderer, `demos.py` records the scripted
experts into a LeRobot-style `datasets.Dataset`.

mujoco picks its GL backend when it is first imported and defaults to GLFW, which
needs a display; this package is imported before any of its modules (and so before
mujoco), so a headless default is set here. A value set by the caller wins
(MUJOCO_GL=osmesa where EGL is missing).
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
