"""Zero-shot classification by the class-conditional ELBO (ddm.classify)."""

import pytest
import torch
from torch import nn

from ddm.classify import class_log_likelihoods
from ddm.model import DenoiserOutput
from ddm.process import MaskingProcess
from ddm.schedules import get_schedule


class ClassTokenModel(nn.Module):
    """Predicts token c at every position with probability 0.9 given class c (vocab 8)."""

    def forward(self, ids, cond=None, **_):
        probs = torch.full((ids.shape[0], ids.shape[1], 8), 0.1 / 7)
        probs[torch.arange(ids.shape[0]), :, cond.classes] = 0.9
        return DenoiserOutput(probs.log())


def test_the_class_that_explains_the_observed_tokens_wins():
    process = MaskingProcess(get_schedule("linear"), mask_id=8)
    ids = torch.tensor([[3] * 6 + [5] * 4, [1] * 10])
    observed = torch.zeros(2, 10, dtype=torch.bool)
    observed[:, :6] = True  # row 0's unobserved tokens say class 5: they must not count
    scores = class_log_likelihoods(ClassTokenModel(), ids, observed, 8, process, torch.Generator().manual_seed(0),
                                   draws=16)
    assert scores.shape == (2, 8) and scores.argmax(1).tolist() == [3, 1]
    # the ELBO of 6 observed tokens is near their exact log-likelihood (the model ignores the context)
    exact = 6 * torch.log(torch.tensor(0.9))
    assert scores[0, 3] == pytest.approx(float(exact), rel=0.35)
    assert (scores[0, 3] - scores[0, 5]) > 10  # a wrong class pays about log(0.9 / (0.1/7)) a token
    with pytest.raises(ValueError, match="observed"):
        class_log_likelihoods(ClassTokenModel(), ids, observed.long(), 8, process, torch.Generator())
