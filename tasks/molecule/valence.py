"""The molecule layout's constraints as a logits processor (`ddm.sampling.constraints`).

Token layout (`tokenizers_vq.graphs.AdjacencyLayout`): A node slots, then one bond slot per
atom pair i < j. Vocabulary: 0 padding atom, 1..K atom types, K+1 no bond, K+2.. bond
orders 1, 2, 3. The mask id (= vocabulary size) marks an undecided slot.

Structure (always true of encoded molecules, so it is also applied in training):
* a node slot holds an atom type or padding, a bond slot holds "no bond" or a bond order;
* padding is a suffix of the node slots: no padding before a decided real atom (or an atom
  with a decided bond), no real atom after a decided padding atom; a padding atom takes no
  bond; the first slot is an atom.

Valence (`valence=True`): an atom's bonds may not exceed its type's capacity, the
largest valence rdkit allows the element (isoelectronic element for a charged atom) less
its explicit hydrogens. A bond slot (i, j) allows the orders that fit the capacity left on
both atoms after their *other* decided bonds (an undecided atom counts with the largest
capacity of any type); a node slot allows the types whose capacity holds the bonds already
decided on it.

Connected (`connected=True`, needs `valence`; for the SMILES atom order of
`MoleculeConfig.atom_order`, where every atom but the first bonds to an earlier one, its
parent in the depth-first walk): when an atom i (not decided as padding) has no bond to an
earlier atom yet, the only undecided slot (j, i), j < i, where a bond still fits must hold
one; atom i keeps one unit of capacity for that bond, and atom j keeps one for the slot that
must take it (a second pass). So a molecule comes out in one piece unless every earlier atom
is full. The padding must be decided first (the task fixes it, the autoregressive order puts
atoms before bonds), else an atom that will be padding is taken for a real one.

Decided slots are judged by the same rule with their own token left out, and a decided
token that still fits is pinned (logit 0, every other -inf: the carry-over of MDLM). So a
token that fits keeps probability 1 under the processor and one that no longer fits has
probability 0: tokens revealed together in one parallel step can overshoot an atom (each
was allowed alone), and `sample.remasking: recheck` then masks them again to be redrawn.
A block's last step is never rechecked: `recheck.py` redraws what is left after the loop.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tokenizers_vq.graphs import AdjacencyLayout
from tokenizers_vq.molecules import parse_atom_type


def type_capacities(atom_types: list[str]) -> list[int]:
    """Bond-order capacity per atom type: rdkit's largest allowed valence less explicit hydrogens."""
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    out = []
    for name in atom_types:
        symbol, charge, hydrogens = parse_atom_type(name)
        # rdkit judges a charged atom by its isoelectronic element (N+ like C, O- like F)
        valences = [v for v in table.GetValenceList(table.GetAtomicNumber(symbol) - charge) if v >= 0]
        out.append(max(valences) - hydrogens if valences else 8)  # no valence rule: nothing to forbid
    return out


class MoleculeConstraints:
    """processor(logits [B, M, V], ids [B, N], positions [M]) -> logits with forbidden tokens at -inf."""

    def __init__(self, layout: AdjacencyLayout, capacities: list[int], valence: bool = True,
                 connected: bool = False):
        if len(capacities) != layout.node_types:
            raise ValueError(f"capacities: {len(capacities)} values for {layout.node_types} atom types")
        if connected and not valence:
            raise ValueError("MoleculeConstraints: the connectivity rule needs the valence rule (valence=True)")
        self.layout, self.valence, self.connected = layout, valence, connected
        self.atoms, self.types = layout.max_nodes, layout.node_types
        self.vocab = layout.vocab_size
        self.capacity = torch.tensor(capacities, dtype=torch.long)
        self.orders = torch.arange(layout.edge_types + 1)  # bond slot token no_edge + o has order o
        kinds = torch.zeros(layout.length, self.vocab, dtype=torch.bool)
        kinds[:self.atoms, :self.types + 1] = True
        kinds[self.atoms:, self.types + 1:] = True
        self.kinds = kinds  # [N, V]: which tokens each slot may hold at all

    def __repr__(self) -> str:
        return (f"MoleculeConstraints(atoms={self.atoms}, types={self.types}, valence={self.valence}, "
                f"connected={self.connected})")

    def allowed(self, ids: Tensor) -> Tensor:
        """[B, N, V] bool: the tokens each slot may hold given the decided ones."""
        device = ids.device
        lay, a, k = self.layout, self.atoms, self.types
        rows, cols = lay.rows.to(device), lay.cols.to(device)
        b = ids.shape[0]
        nodes, bonds = ids[:, :a], ids[:, a:]
        node_set, bond_set = nodes < self.vocab, bonds < self.vocab
        pad = node_set & (nodes == 0)
        real = node_set & (nodes >= 1) & (nodes <= k)
        order = torch.where(bond_set, (bonds - lay.no_edge).clamp(0, lay.edge_types), 0)  # [B, E]

        used = torch.zeros(b, a, dtype=torch.long, device=device)  # decided bond orders per atom
        used.index_add_(1, rows, order)
        used.index_add_(1, cols, order)

        allowed = self.kinds.to(device)[None].expand(b, -1, -1).clone()
        node_ok, bond_ok = allowed[:, :a, :k + 1], allowed[:, a:, k + 1:]  # views

        # padding is a suffix and takes no bond: no real atom after a decided pad, no pad before a decided
        # real atom or an atom with a decided bond, no pad on an atom with a bond, no bond on a pad
        atom = real | (used > 0)
        pad_before = torch.cumsum(pad.long(), 1) - pad.long() > 0
        atom_after = torch.flip(torch.cumsum(torch.flip(atom.long(), [1]), 1), [1]) - atom.long() > 0
        node_ok[:, :, 1:] &= ~pad_before[:, :, None]
        node_ok[:, :, 0] &= ~atom_after & (used == 0)
        node_ok[:, 0, 0] = False  # a molecule has an atom
        pad_end = pad | pad_before  # a pad, or a slot that can only become one
        bond_ok[:, :, 1:] &= ~(pad_end[:, rows] | pad_end[:, cols])[:, :, None]

        if not self.valence:
            return allowed
        capacity = self.capacity.to(device)
        cap = torch.where(real, capacity[(nodes - 1).clamp(0, k - 1)], int(capacity.max()))
        cap = torch.where(pad, 0, cap)
        orders = self.orders.to(device)[None, None]
        zero = torch.zeros(b, a, dtype=torch.long, device=device)
        reserve, pending, must = zero, zero, None
        if self.connected:
            undecided = ~bond_set
            back_bonds = zero.index_add(1, cols, (order > 0).long())
            other_back_bonds = back_bonds[:, cols] - (order > 0).long()  # of atom i, slot (j, i) left out
            # an atom (not padding) still waiting for its bond to an earlier atom keeps room for it
            reserve = ((torch.arange(a, device=device) > 0)[None] & ~pad & (back_bonds == 0)
                       & (zero.index_add(1, cols, undecided.long()) > 0)).long()
        for _ in range(2 if self.connected else 1):
            # what the other decided bonds leave on each end of a slot (i, j), i < j, [B, E]: the slot is
            # a later bond of i (i's reserve stays) and j's bond to an earlier atom; `pending` keeps room
            # on atom i for the bonds that must come to it (below), less this slot's own
            own_pending = (must & undecided).long() if must is not None else 0
            left_i = cap[:, rows] - (used[:, rows] - order) - reserve[:, rows] - (pending[:, rows] - own_pending)
            left_j = cap[:, cols] - (used[:, cols] - order) - pending[:, cols]
            fits = orders <= torch.minimum(left_i, left_j)[..., None]
            fits[..., 0] = True  # "no bond" always fits
            if not self.connected:
                break
            # atom j > 0 bonds to some earlier atom: the only undecided slot (i, j), i < j, where a bond
            # still fits must hold one, when j has no such bond yet. Every atom not decided as padding
            # counts: the task gives the padding first (the atom count drawn), the autoregressive order
            # decides atoms before bonds. Pass 2 keeps room for those bonds on the earlier atoms.
            bond_fits = (fits[..., 1:] & bond_ok[..., 1:]).any(-1)
            viable = undecided & bond_fits
            others_viable = zero.index_add(1, cols, viable.long())[:, cols] - viable.long()
            must = ~pad[:, cols] & (other_back_bonds == 0) & (others_viable == 0) & bond_fits
            pending = zero.index_add(1, rows, (must & undecided).long())
        bond_ok &= fits
        if must is not None:
            bond_ok[:, :, 0] &= ~must
        type_fits = capacity[None, None] >= (used + reserve + pending)[..., None]  # [B, A, K]
        # an atom overfull for every type (an overshoot): keep the roomiest type so the slot has a token;
        # its bonds are forbidden and get redrawn
        hopeless = ~type_fits.any(-1, keepdim=True)
        type_fits |= hopeless & (capacity == capacity.max())[None, None]
        node_ok[:, :, 1:] &= type_fits
        return allowed

    def __call__(self, logits: Tensor, ids: Tensor, positions: Tensor) -> Tensor:
        if logits.shape[-1] != self.vocab:
            raise ValueError(f"MoleculeConstraints: logits over {logits.shape[-1]} tokens, the molecule layout "
                             f"has {self.vocab}")
        positions = positions.to(ids.device)
        allowed = self.allowed(ids)[:, positions]  # [B, M, V]
        current = ids[:, positions]
        decided = current < self.vocab
        keep = allowed.gather(-1, current.clamp_max(self.vocab - 1)[..., None])[..., 0] & decided
        # pin a decided token that still fits: it stays with probability 1, a misfit gets 0
        pinned = torch.zeros_like(allowed)
        pinned.scatter_(-1, current.clamp_max(self.vocab - 1)[..., None], True)
        allowed = torch.where(keep[..., None], pinned, allowed)
        # a state no molecule fits (tokens of one parallel step that contradict each other): the slot may
        # hold any token of its kind, so something can be drawn
        empty = ~allowed.any(-1, keepdim=True)
        allowed = torch.where(empty, self.kinds.to(ids.device)[positions][None], allowed)
        return logits.masked_fill(~allowed, float("-inf"))
