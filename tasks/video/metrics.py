"""Video figures: PSNR and SSIM against the truth, the two classic baselines, and the digit
crops that the image judge reads frame by frame.

All videos are float [B, 1, T, H, W] in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def check_videos(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 5 or x.shape[1] != 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected grey videos [B, 1, T, H, W], got {shape}")


def psnr(x: Tensor, truth: Tensor, where: Tensor | None = None) -> Tensor:
    """Per video 10 log10(1 / MSE) over the pixels `where` marks (default all): [B]. A perfect
    video scores 100 dB rather than infinity, so that means stay finite."""
    check_videos(x, "x")
    if x.shape != truth.shape:
        raise ValueError(f"truth: shape {tuple(truth.shape)} differs from the videos' {tuple(x.shape)}")
    err = (x.float() - truth.float()) ** 2
    if where is None:
        mse = err.flatten(1).mean(1)
    else:
        w = where.expand_as(err).float()
        mse = (err * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp_min(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def _gaussian_window(size: int = 7, sigma: float = 1.5) -> Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(x: Tensor, truth: Tensor, frames: Tensor | None = None, window: int = 7) -> Tensor:
    """Per video mean SSIM (Wang et al. 2004: Gaussian window, sigma 1.5, K1 0.01, K2 0.03, range 1)
    over the frames `frames` marks ([T] bool, default all): [B]. The window is 7 pixels rather
    than 11 because the frames are small."""
    check_videos(x, "x")
    b, _, t, h, w = x.shape
    if frames is None:
        frames = torch.ones(t, dtype=torch.bool)
    a = x[:, 0, frames].reshape(-1, 1, h, w).float()
    c = truth[:, 0, frames].reshape(-1, 1, h, w).float()
    k = _gaussian_window(window).to(a)

    def blur(z: Tensor) -> Tensor:
        return F.conv2d(z, k)  # valid positions only, as the reference implementation

    mu_a, mu_c = blur(a), blur(c)
    var_a = blur(a * a) - mu_a ** 2
    var_c = blur(c * c) - mu_c ** 2
    cov = blur(a * c) - mu_a * mu_c
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_c + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_c ** 2 + c1) * (var_a + var_c + c2))
    return s.flatten(1).mean(1).reshape(b, -1).mean(1)


def copy_last_frame(videos: Tensor, given_frames: int) -> Tensor:
    """The prediction baseline: every later frame is the last given one."""
    out = videos.clone()
    out[:, :, given_frames:] = videos[:, :, given_frames - 1:given_frames]
    return out


def linear_blend(videos: Tensor, given_frames: int) -> Tensor:
    """The interpolation baseline: the frames between the first and last `given_frames` are a linear
    cross-fade from the last frame of the start to the first frame of the end."""
    t = videos.shape[2]
    start, end = videos[:, :, given_frames - 1], videos[:, :, t - given_frames]
    out = videos.clone()
    gap = t - 2 * given_frames + 1  # steps from the start frame to the end frame
    for i in range(given_frames, t - given_frames):
        w = (i - given_frames + 1) / gap
        out[:, :, i] = (1 - w) * start + w * end
    return out


def digit_crops(videos: Tensor, digit_size: int, out_size: int = 28) -> Tensor:
    """Each frame's digit, centred on its centre of mass as MNIST digits are, resized to the judge's
    input: [B * T, 1, out_size, out_size]. For one digit a frame.

    The window with the most ink finds the digit (stray ink elsewhere does not move it); the
    centre of mass inside that window then centres the crop, since a digit narrower than the
    window fits in many windows of equal ink."""
    check_videos(videos, "videos")
    b, _, t, h, w = videos.shape
    n, d = b * t, digit_size
    frames = videos.transpose(1, 2).reshape(n, 1, h, w).float()
    mass = F.avg_pool2d(frames, d, stride=1)  # [N, 1, h - d + 1, w - d + 1]
    best = mass.flatten(1).argmax(1)
    top, left = best // mass.shape[-1], best % mass.shape[-1]
    window = _crop(frames, top, left, d)
    ink = window.sum((1, 2)).clamp_min(1e-8)
    grid = torch.arange(d, dtype=torch.float32)
    cy = (window.sum(2) * grid).sum(1) / ink  # centre of mass inside the window
    cx = (window.sum(1) * grid).sum(1) / ink
    top = (top + torch.round(cy - (d - 1) / 2).long()).clamp(0, h - d)
    left = (left + torch.round(cx - (d - 1) / 2).long()).clamp(0, w - d)
    return to_judge_size(_crop(frames, top, left, d).unsqueeze(1), out_size)


def _crop(frames: Tensor, top: Tensor, left: Tensor, size: int) -> Tensor:
    """[N, 1, H, W] frames, per-frame corners -> [N, size, size]."""
    offsets = torch.arange(size)
    ys = (top[:, None] + offsets)[:, :, None].expand(-1, -1, size)
    xs = (left[:, None] + offsets)[:, None, :].expand(-1, size, -1)
    return frames[torch.arange(len(frames))[:, None, None], 0, ys, xs]


def to_judge_size(images: Tensor, out_size: int = 28) -> Tensor:
    """Digits of any size -> the judge's 28x28 (bilinear; the judge is trained through the same resize)."""
    if images.shape[-1] == out_size:
        return images
    return F.interpolate(images, size=(out_size, out_size), mode="bilinear", align_corners=False).clamp(0, 1)


NO_DIGIT = -1  # a frame whose crop holds too little ink to show a digit


def named_digits(predicted: Tensor, crops: Tensor, ink_floor: float) -> Tensor:
    """The judge's digit per frame, or NO_DIGIT where the crop's mean pixel is under `ink_floor`: an
    empty frame shows no digit, whatever the judge makes of it (else blank videos keep an identity)."""
    return torch.where(crops.flatten(1).mean(1) >= ink_floor, predicted, torch.full_like(predicted, NO_DIGIT))


def identity_kept(predicted: Tensor, frames: int) -> Tensor:
    """Per video: does the judge name one and the same digit in every frame? predicted [B * T] -> bool [B]."""
    p = predicted.reshape(-1, frames)
    return (p == p[:, :1]).all(1) & (p[:, 0] != NO_DIGIT)


def majority(predicted: Tensor, frames: int) -> Tensor:
    """Per video, the digit the judge names most often over its frames: [B]."""
    return predicted.reshape(-1, frames).mode(1).values


def resize_area(images: Tensor, size: int) -> Tensor:
    """Images [B, 1, h, w] -> [B, 1, size, size] by area averaging (how the videos' digits are drawn)."""
    if images.shape[-1] == size:
        return images
    return F.interpolate(images.float(), size=(size, size), mode="area")
