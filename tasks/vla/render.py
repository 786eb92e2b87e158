"""A fast offscreen camera renderer for mujoco scenes (MetaWorld's included).

MetaWorld's own renderer takes about 300 ms a frame on a CPU (software GL); most of
that is shadows, reflections and multisampling, which a policy does not need. This
one turns them off and renders square RGB frames from named cameras.

Built on mujoco's low-level calls rather than `mujoco.Renderer` for one reason:
every demo episode is a new env (a seed fixes the scene when the env is built) and
so a new model, and `mujoco.Renderer` makes a new GL context for each (about 0.3 s
of a 0.45 s start-up on software GL). Here one GL context per process is shared
by every renderer; only the model's own render context is made per model.

MetaWorld's corner cameras are mounted rolled upside down (their up axis points
below the horizon), so mujoco renders them upside down. Their images are turned
180 degrees (rows and columns reversed), not just flipped by rows: a row flip alone
is upright but mirrored (left and right swapped), which would contradict the
scene's geometry (and an instruction that says "left"). Which cameras need the
turn is read from the model, not listed by name: a camera fixed in the world whose
up axis points downward. Cameras on the robot (gripperPOV) move with the hand and
are left as mujoco gives them.
"""

from __future__ import annotations

import tasks.vla  # noqa: F401  (sets a headless MUJOCO_GL before mujoco is imported)

import os

import mujoco
import numpy as np

_GL = None  # this process's GL context, made on first use and kept (GL contexts do not survive a fork)


def _gl_context():
    global _GL
    if _GL is None:
        if mujoco.gl_context.GLContext is None:
            raise RuntimeError("mujoco has no GL backend (MUJOCO_GL is off)")
        # The context's own surface is not drawn to (frames go to mujoco's offscreen
        # buffer), so its size does not matter.
        _GL = mujoco.GLContext(64, 64)
    _GL.make_current()
    return _GL


def camera_names(model: mujoco.MjModel) -> list[str]:
    return [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]


def is_upside_down(model: mujoco.MjModel, camera: str) -> bool:
    """True for a camera fixed in the world (body 0) whose up axis (its y) points down."""
    cam = model.camera(camera)
    if cam.bodyid[0] != 0:
        return False
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, cam.quat)
    return bool(rot.reshape(3, 3)[2, 1] < 0.0)  # world-z component of the camera's y axis


class CameraRenderer:
    """Renders `cameras` of a mujoco model as upright uint8 images [size, size, 3]
    (row 0 is the top of the picture).

    Use it from the thread that made it, and `close()` it (or use `with`) when the
    model goes away.
    """

    def __init__(self, model: mujoco.MjModel, cameras: tuple[str, ...] | list[str] = ("corner3",),
                 size: int = 84):
        if not cameras:
            raise ValueError("CameraRenderer: no cameras given")
        known = camera_names(model)
        unknown = [c for c in cameras if c not in known]
        if unknown:
            raise ValueError(f"CameraRenderer: unknown camera(s) {unknown}; this model has {known}")
        if not isinstance(size, int) or size < 8:
            raise ValueError(f"CameraRenderer: size must be an int >= 8, got {size!r}")
        self.model = model
        self.cameras = tuple(cameras)
        self.size = size
        self.turned = {cam: is_upside_down(model, cam) for cam in self.cameras}
        self._camera_ids = {cam: model.camera(cam).id for cam in self.cameras}
        # The offscreen buffer is allocated from these when the render context is made:
        # no multisampling (the costliest part on software GL) and no larger than needed.
        model.vis.quality.offsamples = 0
        model.vis.global_.offwidth = size
        model.vis.global_.offheight = size
        try:
            _gl_context()
            self._context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_50)
        except mujoco.FatalError as e:  # mujoco's word for "no usable GL context"
            raise RuntimeError(f"CameraRenderer: no offscreen GL context with MUJOCO_GL="
                               f"{os.environ.get('MUJOCO_GL')!r} ({e}); install the GL libraries "
                               f"(scripts/install_sim.sh) and use MUJOCO_GL=egl or osmesa") from e
        self._scene = mujoco.MjvScene(model, maxgeom=10_000)
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        self._scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._option = mujoco.MjvOption()
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._rect = mujoco.MjrRect(0, 0, size, size)

    def render(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        """One upright frame per camera, from the current state in `data`."""
        if self._context is None:
            raise RuntimeError("CameraRenderer: render after close")
        _gl_context()
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
        frames = {}
        for cam in self.cameras:
            self._camera.fixedcamid = self._camera_ids[cam]
            mujoco.mjv_updateScene(self.model, data, self._option, None, self._camera,
                                   mujoco.mjtCatBit.mjCAT_ALL, self._scene)
            mujoco.mjr_render(self._rect, self._scene, self._context)
            image = np.empty((self.size, self.size, 3), dtype=np.uint8)
            mujoco.mjr_readPixels(image, None, self._rect, self._context)
            # GL reads the bottom row first, so `image` is the camera's view with its rows
            # reversed: reversing them back gives that view; for a rolled camera, reversing
            # the columns instead turns the view 180 degrees (rows and columns reversed).
            frames[cam] = np.ascontiguousarray(image[:, ::-1] if self.turned[cam] else image[::-1])
        return frames

    def close(self) -> None:
        if self._context is not None:
            _gl_context()
            self._context.free()
            self._context = None

    def __enter__(self) -> "CameraRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
