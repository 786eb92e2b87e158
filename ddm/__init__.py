"""ddm: masked discrete diffusion over token streams.

    from ddm import Condition, Fixed, Sampler, load_pretrained
    model = load_pretrained("runs/image_mnist/model")     # weights + how they were trained
    result = Sampler.from_pretrained(model, steps=8)(model, cond=Condition(classes=labels))
"""

from .hub import load_pretrained
from .model import Condition, build_denoiser
from .sampling import Fixed, Sampler

__version__ = "0.1.0"
__all__ = ["Condition", "Fixed", "Sampler", "build_denoiser", "load_pretrained"]
