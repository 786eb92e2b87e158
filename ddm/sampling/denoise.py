"""The sampler's model calls: cached condition prefix, guidance rows, reuse, and the NFE count.

NFE (number of function evaluations) is counted per sample: one call of the denoiser
evaluates a row once and adds 1 to it; a guided call evaluates the row twice (conditional
and unconditional, batched into one call of 2B rows) and adds 2. A reused prediction adds 0.
A call at guidance scale 0 (a step of the `linear` guidance schedule) runs the conditional
rows alone and adds 1.
Encoding the condition prefix is not counted: it runs once per sample (with `cache_prefix`)
and costs less than a call on the target.

Rows leave the call (`reuse`): a row whose tokens did not change since its last call (it is
done, or this step revealed nothing in it) is not run again. Its last prediction is exact,
because the model's time is a function of the tokens. `nfe` counts the calls of the batch,
`row_nfe` those of each row, so a batch whose rows finish early costs fewer calls per sample
than per batch.

Approximate target cache (`cache_targets`, the dKV-cache / Fast-dLLM idea): a call runs only
the masked positions and those whose token changed since they last ran; the other positions
are attended to through the keys/values of their last run. Those are stale by however much
the tokens around them changed since, which is the approximation. `refresh` > 0 runs every
position every `refresh` calls.

Block reuse (`skip_blocks`, the Delta-DiT / Learning-to-Cache idea): between neighbouring steps
most tokens do not change, and neither does much of what a block adds to them. A call that is
not a multiple of `skip_refresh` skips the listed blocks, adding instead the change each made to
its input at the last call that ran it; the others run every block and record those changes.
The recorded changes are stale by however much the tokens changed since, which is the
approximation. It cuts the work of a call by the share of blocks skipped, at any batch size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..model import BlockReuse, Condition
from .guidance import ClassifierFreeGuidance


class Denoise:
    def __init__(self, model, cond: Condition | None, guidance: ClassifierFreeGuidance | None = None,
                 cache_prefix: bool = True, reuse: bool = True, cache_targets: bool = False, refresh: int = 0,
                 skip_blocks: tuple[int, ...] = (), skip_refresh: int = 2):
        self.model = model
        self.guidance = guidance
        self.cond = guidance.rows(cond) if guidance is not None else cond
        if cache_targets:
            _check_target_cache(model)
        self.prefix = None
        if (cache_prefix or cache_targets) and getattr(model, "supports_prefix_cache", False) and self.cond is not None:
            # Exact: the prefix never attends to the target, so its keys/values do not change.
            self.prefix = model.encode_prefix(self.cond)
        self.reuse = reuse
        self.cache_targets, self.refresh = cache_targets, refresh
        if skip_blocks:
            _check_block_reuse(model, skip_blocks, cache_targets)
        self.skip_blocks, self.skip_refresh = tuple(skip_blocks), skip_refresh
        self._deltas: dict[int, Tensor] | None = None  # skip_blocks: per block [fed rows, N, D]
        self._recorded: Tensor | None = None  # skip_blocks: [fed rows] which have deltas (None: all)
        self._scale: float | None = None  # the guidance scale of the last call (0: unguided)
        self.nfe = 0
        self.row_nfe: Tensor | None = None  # [B] calls per row
        self.positions_run = 0  # target positions run by the model (x2 when guided), against...
        self.positions_total = 0  # ...those a call of every fed row on every position would run
        self._ids: Tensor | None = None  # [B, N] the tokens at each row's last call
        self._out: tuple[Tensor, Tensor | None] | None = None  # the prediction for every row
        self._kv: list[tuple[Tensor, Tensor]] | None = None  # cache_targets: per layer [fed rows, H, N, Dh]
        self._ran: Tensor | None = None  # cache_targets: [fed rows, N] the token each position last ran with
        self._raw: Tensor | None = None  # cache_targets: [fed rows, N, V] logits of each position's last run
        self._calls = 0  # model calls so far (the refresh clocks of cache_targets and skip_blocks)

    def __call__(self, ids: Tensor, t: Tensor, values: Tensor | None = None,
                 scale: float | None = None) -> tuple[Tensor, Tensor | None]:
        """ids [B, N] (and a joint model's noisy vectors [B, N, C]) -> (logits or guided log-probs
        [B, N, V], continuous [B, N, C] or None). `scale`: this call's guidance scale (default the
        guidance's own); at 0 the call runs the conditional rows alone."""
        b = ids.shape[0]
        guided = self.guidance is not None and (scale is None or scale > 0)
        if self.row_nfe is None:
            self.row_nfe = torch.zeros(b, dtype=torch.long, device=ids.device)
        rows = None  # every row
        if self.reuse and self._ids is not None and values is None:
            changed = (ids != self._ids).any(1)
            if self.guidance is not None and (scale if guided else 0.0) != self._scale:
                # the last prediction is at another guidance scale: the rows still to fill run again
                changed |= (ids == self.model.config.mask_id).any(1)
            if not changed.any():
                return self._out
            if not changed.all():
                rows = changed.nonzero()[:, 0]
        factor = 2 if guided else 1
        self.nfe += factor
        self.row_nfe[slice(None) if rows is None else rows] += factor
        fed = rows if rows is None or not guided else torch.cat([rows, rows + b])
        if self.guidance is not None and not guided:  # the conditional half of the guided rows
            fed = torch.arange(b, device=ids.device) if rows is None else rows
        pick = (lambda x: x) if rows is None else (lambda x: None if x is None else x[rows])  # noqa: E731
        tokens, times, vectors = ids if rows is None else ids[rows], pick(t), pick(values)
        if guided:
            tokens, times = torch.cat([tokens, tokens]), torch.cat([times, times])
            vectors = None if vectors is None else torch.cat([vectors, vectors])
        if self.cache_targets:
            logits, continuous = self._cached(tokens, times, fed), None
        else:
            logits, continuous = self._run(tokens, times, vectors, fed)
        self._calls += 1
        vocab = self.model.config.vocab_size
        if logits.shape != (*tokens.shape, vocab):
            raise ValueError(f"model: returned logits of shape {tuple(logits.shape)}, expected "
                             f"{(*tokens.shape, vocab)} (model.config.vocab_size={vocab})")
        if guided:
            logits = self.guidance.combine(logits, scale)
            continuous = None if continuous is None else self.guidance.combine_continuous(continuous, scale)
        if rows is not None:  # the other rows keep their last prediction
            logits = self._out[0].index_copy(0, rows, logits)
            if continuous is not None:
                continuous = self._out[1].index_copy(0, rows, continuous)
        self._ids, self._out, self._scale = ids.clone(), (logits, continuous), scale if guided else 0.0
        return self._out

    def _run(self, tokens: Tensor, times: Tensor, vectors: Tensor | None, fed: Tensor | None):
        extra = {} if vectors is None else {"values": vectors}  # a discrete-only denoiser need not take values
        reuse = self._block_reuse(fed)
        if reuse is not None:
            extra["reuse"] = reuse
        self.positions_run += tokens.numel()
        self.positions_total += tokens.numel()
        if self.prefix is not None:
            prefix = self.prefix if fed is None else self.prefix.select(fed)
            out = self.model(tokens, t=times, prefix=prefix, **extra)
        else:
            cond = self.cond if fed is None or self.cond is None else self.cond.select(fed)
            out = self.model(tokens, t=times, cond=cond, **extra)
        if reuse is not None and not reuse.skip:  # the blocks' changes at this call, kept for the next ones
            if fed is None:
                self._deltas, self._recorded = reuse.deltas, None
            else:
                if self._deltas is None:  # a first call without the guidance rows: room for every row
                    self._deltas = {i: d.new_zeros((self._all_rows, *d.shape[1:])) for i, d in reuse.deltas.items()}
                    self._recorded = torch.zeros(self._all_rows, dtype=torch.bool, device=tokens.device)
                for i, delta in reuse.deltas.items():
                    self._deltas[i][fed] = delta
                if self._recorded is not None:
                    self._recorded[fed] = True
        return out.logits, out.continuous

    @property
    def _all_rows(self) -> int:
        """Rows a call can feed when a first call fed only some (the conditional half of guided rows): 2B."""
        return self.cond.batch_size

    def _block_reuse(self, fed: Tensor | None) -> BlockReuse | None:
        """What the blocks of this call reuse (`skip_blocks`): nothing at a refresh, which records."""
        if not self.skip_blocks:
            return None
        unrecorded = self._recorded is not None and not self._recorded[slice(None) if fed is None else fed].all()
        if self._deltas is None or self._calls % self.skip_refresh == 0 or unrecorded:
            return BlockReuse(self.skip_blocks, {})
        deltas = self._deltas if fed is None else {i: d[fed] for i, d in self._deltas.items()}
        return BlockReuse(self.skip_blocks, deltas, skip=True)

    def _cached(self, tokens: Tensor, times: Tensor, fed: Tensor | None) -> Tensor:
        """Raw logits [fed rows, N, V] with only the stale positions run (`cache_targets`)."""
        prefix = self.prefix if self.prefix is None or fed is None else self.prefix.select(fed)
        every = slice(None) if fed is None else fed
        stale = None
        if self._kv is not None and not (self.refresh and self._calls % self.refresh == 0):
            stale = (tokens != self._ran[every]) | (tokens == self.model.config.mask_id)
            width = int(stale.sum(1).max())
            if width == tokens.shape[1]:
                stale = None  # every position is stale: one exact call
        n = tokens.shape[1]
        if stale is None:
            out, kv = self.model.forward_cached(tokens, times, None, None, prefix)
            raw, ran, width = out.logits, tokens, n
        else:
            # The stale positions first (stable order), then as many fresh ones as the widest row needs.
            index = torch.argsort((~stale).to(torch.int8), dim=1, stable=True)[:, :max(width, 1)]
            cached = [(k[every], v[every]) for k, v in self._kv]
            out, kv = self.model.forward_cached(tokens, times, index, cached, prefix)
            vocab = out.logits.shape[-1]
            raw = self._raw[every].scatter(1, index[..., None].expand(-1, -1, vocab), out.logits)
            ran = self._ran[every].scatter(1, index, tokens.gather(1, index))
        self.positions_run += tokens.shape[0] * max(width, 1)
        self.positions_total += tokens.numel()
        if fed is None:
            self._kv, self._ran, self._raw = kv, ran, raw
        else:
            if self._kv is None:  # a first call without the guidance rows: room for every row, the others unrun
                rows = self._all_rows
                self._kv = [(k.new_zeros((rows, *k.shape[1:])), v.new_zeros((rows, *v.shape[1:]))) for k, v in kv]
                self._ran = ran.new_full((rows, n), -1)  # no token is -1: every position is stale
                self._raw = raw.new_zeros((rows, *raw.shape[1:]))
            for (k, v), (k_new, v_new) in zip(self._kv, kv):
                k[fed], v[fed] = k_new, v_new
            self._ran[fed], self._raw[fed] = ran, raw
        return raw


def _check_block_reuse(model, blocks: tuple[int, ...], cache_targets: bool) -> None:
    name = type(model).__name__
    if not getattr(model, "supports_block_reuse", False):
        raise ValueError(f"sample.skip_blocks: the model ({name}) cannot skip its blocks (no `reuse` in its "
                         "forward); set sample.skip_blocks=[]")
    depth = len(model.blocks)
    outside = [i for i in blocks if not 0 <= i < depth]
    if outside:
        raise ValueError(f"sample.skip_blocks: {outside} are not blocks of the model ({name}), which has "
                         f"blocks 0..{depth - 1}")
    if cache_targets:
        raise ValueError("sample.skip_blocks: not with sample.cache_targets (a skipped block would leave the "
                         "target cache's keys/values of the positions run stale); choose one")


def _check_target_cache(model) -> None:
    name = type(model).__name__
    if not hasattr(model, "forward_cached"):
        raise ValueError(f"sample.cache_targets: the model ({name}) has no target key/value cache "
                         "(forward_cached); set sample.cache_targets=false")
    if getattr(model.config, "continuous_dim", 0):
        raise ValueError(f"sample.cache_targets: the model ({name}) has a continuous head, whose vectors the "
                         "approximate cache does not carry; set sample.cache_targets=false")
    if getattr(model.config, "causal", False):
        raise ValueError(f"sample.cache_targets: the model ({name}) is causal; decode it with its own "
                         "incremental cache (ddm.autoregressive)")
