"""The molecule task: masked diffusion over MOSES molecules as atom and bond tokens, with
valence-aware decoding and conditioning on one property.

    OMP_NUM_THREADS=1 ddm --threads 1 run --config configs/tasks/molecule_cpu.yaml

`prepare` fits the molecule tokenizer (`tokenizers_vq.molecules`: kekulized atom types and
bond orders over the upper triangle of max_atoms atoms) into <run_dir>/tokenizer, or loads
it, and encodes the training split of its data section. Every training molecule carries its
property (`task.property`, Crippen logP or QED) as a 1-d condition (`conditioning.py`),
dropped with `diffusion.cond_dropout`, so one model samples conditionally and unconditionally.

Sampling fixes the atom count first (drawn from the training molecules' counts, as DiGress
does): the padding node slots and the bond slots on them are given, and the model fills the
atoms and bonds. Training shows those slots too (the objective's `padding`: visible, never a
target), so the model learns what it is asked at sampling time. The valence processor
(`valence.py`) forbids bond orders and atom types that would break an atom's valence given
what is decided, and its connectivity rule makes every atom bond to an earlier one (the
tokenizer's SMILES atom order, a depth-first walk); with `task.recheck` the tokens one
parallel step made overfill an atom together are masked and redrawn, inside the loop and
after it (`recheck.py`). Training uses the structural part of the processor only (slot
kinds, padding suffix): with the other rules the forbidden tokens' logits would never be
trained, and sampling without them (the ablations) would read untrained logits.

`ddm eval` samples unconditionally and reports validity, connectivity, uniqueness, novelty
against the training molecules, internal diversity and Wasserstein-1 distances of QED, logP,
SA and MW to the MOSES test split, next to the same figures of as many training molecules (the
floor), the ablations (no valence processor; no recheck) and the autoregressive baseline (the
same transformer, causal, same data and steps, sampled with the same processor); then samples
for property requests drawn from the test split and reports the error against those requests
next to that of the unconditional samples; and draws a grid of samples.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from datasets import Dataset

from ddm.config import ConfigError, positive, to_dict
from ddm.experiment import load_experiment
from ddm.objectives import DiffusionObjective
from ddm.sampling import Fixed, Sampler, sample_many
from ddm.task import DiffusionTask, register_task
from tokenizers_vq import tokenizer_for_task
from tokenizers_vq.data.molecules import moses_file, read_smiles

from . import metrics, pictures
from .conditioning import PropertyScale
from .recheck import misfits, redraw_misfits
from .properties import NAMES, PROPERTIES, parse_all, property_of, smiles_properties
from .valence import MoleculeConstraints, type_capacities


@dataclass
class MoleculeTaskConfig:
    name: str = "molecule"
    # a molecule tokenizer experiment: its data section is the task's training data; fitted into
    # <run_dir>/tokenizer when that folder is empty
    tokenizer_config: str = "configs/tokenizers/molecules_gen.yaml"
    tokenizer_path: str = ""  # or an already fitted molecule tokenizer folder
    property: Literal["logp", "qed"] = "logp"  # the conditioning property
    num_test: int = positive(5000)  # MOSES test molecules: the reference distribution and the requests
    ablation_samples: int = positive(200)  # samples per ablation row (no valence processor, no recheck)
    condition_samples: int = positive(200)  # conditional samples, one per request
    baseline: bool = True  # train and compare the autoregressive baseline
    fixed_size: bool = True  # sample the atom count from the training molecules' and fix the padding
    # redraw tokens one parallel step made overfill an atom: in the loop (remasking recheck) and after it
    recheck: bool = True
    recheck_rounds: int = positive(2)
    recheck_steps: int = positive(8)  # at most this many steps per redraw round (tokens beyond 1 a step share steps)
    # every atom but the first bonds to an earlier one (valence.py); needs tokenizer.atom_order: smiles
    connected: bool = True
    condition_guidance: float = 0.0  # classifier-free guidance scale of the conditional samples
    # soft bins of the property beside its standardised value (conditioning.py); model.cond_embed_dim = 1 + bins
    property_bins: int = 0
    picture_molecules: int = positive(16)
    # `ddm sample`: property values to request (cycled over sample.num_samples); empty: unconditional
    sample_property: list[float] = field(default_factory=list)


def _stage(message: str, start: float) -> None:
    print(f"[{time.perf_counter() - start:7.1f} s] {message}", flush=True)


@register_task("molecule")
class MoleculeTask(DiffusionTask):
    Config = MoleculeTaskConfig
    resumable = DiffusionTask.resumable + ("task.num_test", "task.ablation_samples", "task.condition_samples",
                                           "task.baseline", "task.picture_molecules", "task.sample_property")

    # ------------------------------------------------------------------ setup
    def check(self) -> None:
        m, bins = self.config.model, self.config.task.property_bins
        if bins < 0 or bins == 1:
            raise ConfigError(f"task.property_bins: {bins}; expected 0 (the value alone) or at least 2 bins")
        if m.cond_embed_dim != 1 + bins or m.num_classes or m.cond_vocab_size or m.continuous_dim:
            raise ConfigError(f"model: the molecule model is conditioned on one property value and its "
                              f"{bins} soft bins; set model.cond_embed_dim={1 + bins} (1 + task.property_bins) "
                              f"and num_classes, cond_vocab_size, continuous_dim to 0")
        if len(m.shape) != 1:
            raise ConfigError(f"model.shape: the molecule tokens are one sequence, expected [length], got {m.shape}")
        if self.config.diffusion.cond_dropout <= 0:
            raise ConfigError("diffusion.cond_dropout: must be > 0; unconditional samples use the learned null "
                              "condition, which only condition dropout trains")

    def setup(self) -> None:
        t, m = self.config.task, self.config.model
        start = time.perf_counter()
        self.tokenizer = tokenizer_for_task(t.tokenizer_config, t.tokenizer_path, self.run_dir, "molecule")
        self.layout = self.tokenizer.layout
        if m.vocab_size != self.layout.vocab_size or m.shape != [self.layout.length]:
            raise ConfigError(f"model: vocab_size={m.vocab_size}, shape={m.shape} do not match the molecule "
                              f"tokenizer ({len(self.tokenizer.config.atom_types)} atom types, max_atoms="
                              f"{self.layout.max_nodes}): expected vocab_size={self.layout.vocab_size}, "
                              f"shape=[{self.layout.length}]")
        self.capacities = type_capacities(self.tokenizer.config.atom_types)
        if t.connected and self.tokenizer.config.atom_order != "smiles":
            raise ConfigError(f"task.connected: the rule holds for the SMILES atom order only; the tokenizer of "
                              f"{t.tokenizer_config} has atom_order={self.tokenizer.config.atom_order!r} (set "
                              f"tokenizer.atom_order: smiles there, or task.connected: false)")
        self.train_smiles, self.train_ids, self.heldout_smiles, self.heldout_ids = self._encoded_data()
        if not len(self.train_ids):
            raise ConfigError(f"{t.tokenizer_config}: no training molecule fits the tokenizer")
        values = self._property_values(self.train_smiles)
        self.scale = PropertyScale.fit(t.property, values, t.property_bins)
        self.train_embeddings = self.scale.embeddings(values)
        self.heldout_embeddings = self.scale.embeddings(self._property_values(self.heldout_smiles))
        atoms = (self.train_ids[:, :self.layout.max_nodes] > 0).sum(1)
        self.atom_counts = torch.bincount(atoms, minlength=self.layout.max_nodes + 1).double()
        _stage(f"molecule data: {len(self.train_ids)} training, {len(self.heldout_ids)} held-out molecules, "
               f"{self.layout.length} tokens each; {NAMES[t.property]} in [{self.scale.low:.3g}, "
               f"{self.scale.high:.3g}]", start)
        self._reference = None

    def _encoded_data(self) -> tuple[list[str], torch.Tensor, list[str], torch.Tensor]:
        """(train SMILES, ids, held-out SMILES, ids), encoded once and kept in <run_dir>/data.pt for the
        next verb (`ddm run` prepares for training and again for evaluation)."""
        t = self.config.task
        data_cfg = load_experiment(t.tokenizer_config).data
        key = {"data": to_dict(data_cfg), "atom_types": list(self.tokenizer.config.atom_types),
               "atom_order": self.tokenizer.config.atom_order,
               "max_atoms": self.layout.max_nodes}
        path = self.run_dir / "data.pt"
        if path.is_file():
            cached = torch.load(path, weights_only=False)
            if cached.get("key") == key:
                return cached["train_smiles"], cached["train_ids"], cached["heldout_smiles"], cached["heldout_ids"]
        data = type(self.tokenizer).build_data(data_cfg)
        train_smiles, train_ids = self._encode(data["train"], "train")
        heldout_smiles, heldout_ids = self._encode(data["heldout"], "heldout")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"key": key, "train_smiles": train_smiles, "train_ids": train_ids,
                    "heldout_smiles": heldout_smiles, "heldout_ids": heldout_ids}, tmp)
        tmp.replace(path)
        return train_smiles, train_ids, heldout_smiles, heldout_ids

    def _encode(self, smiles: list[str], split: str, chunk: int = 500) -> tuple[list[str], torch.Tensor]:
        """Token ids of the molecules that fit the tokenizer (the others are counted and named on stderr)."""
        from tqdm import tqdm

        kept, rows, skipped = [], [], []
        for i in tqdm(range(0, len(smiles), chunk), desc=f"encoding {split} ({len(smiles)} molecules)",
                      mininterval=5, file=sys.stderr):
            part = smiles[i:i + chunk]
            try:
                rows.extend(self.tokenizer.encode(part).ids)
                kept.extend(part)
                continue
            except ValueError:  # some molecule does not fit: one at a time, to keep the others
                pass
            for s in part:
                try:
                    rows.append(self.tokenizer.encode([s]).ids[0])
                    kept.append(s)
                except ValueError as e:  # too many atoms, an atom type the tokenizer has not got
                    skipped.append(str(e))
        if skipped:
            print(f"{split}: skipped {len(skipped)} molecules the tokenizer cannot hold, e.g. {skipped[0]}",
                  file=sys.stderr)
        ids = torch.stack(rows) if rows else torch.zeros(0, self.layout.length, dtype=torch.long)
        return kept, ids

    def _property_values(self, smiles: list[str]) -> np.ndarray:
        return smiles_properties(smiles, "training SMILES", (self.config.task.property,))[self.config.task.property]

    def reference(self) -> dict:
        """The MOSES test split's properties and the training set's canonical SMILES (loaded once)."""
        if self._reference is None:
            t = self.config.task
            start = time.perf_counter()
            test = read_smiles(moses_file("test"), t.num_test)
            ref = {"test": smiles_properties(test, "MOSES test SMILES"),
                   "training_smiles": set(metrics.canonical_smiles(parse_all(self.train_smiles, "training SMILES")))}
            self._reference = ref
            _stage(f"reference: properties of {len(test)} MOSES test molecules, canonical SMILES of "
                   f"{len(ref['training_smiles'])} training molecules", start)
        return self._reference

    # ------------------------------------------------------------------ constraints and data
    def constraints(self, valence: bool = True, connected: bool | None = None) -> MoleculeConstraints:
        """The processor: structure, with valence, and with the connectivity rule (default task.connected;
        only with valence)."""
        connected = self.config.task.connected if connected is None else connected
        return MoleculeConstraints(self.layout, self.capacities, valence=valence, connected=valence and connected)

    def processors(self) -> list:
        """Sampling (diffusion and autoregressive): structure and valence."""
        self.prepare()
        return [self.constraints(valence=True)]

    def padding_of(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, N] bool: the padding node slots and the bond slots on a padding atom."""
        a = self.layout.max_nodes
        pad = ids[:, :a] == 0
        return torch.cat([pad, pad[:, self.layout.rows] | pad[:, self.layout.cols]], 1)

    def loss_fn(self):
        """The diffusion objective with the structural constraints and the atom count given (see the module doc)."""
        objective = DiffusionObjective(self.process(), self.config.diffusion, [self.constraints(valence=False)])
        fixed_size = self.config.task.fixed_size

        def with_padding(model, batch, generator):
            if fixed_size:
                batch = {**batch, "padding": self.padding_of(batch["ids"])}
            return objective(model, batch, generator)

        return with_padding

    def train_dataset(self) -> Dataset:
        return Dataset.from_dict({"ids": self.train_ids.numpy(),
                                  "cond_embeddings": self.train_embeddings}).with_format("torch")

    def eval_dataset(self, shuffle_conditions: bool = False):
        """The held-out molecules; `shuffle_conditions`: each with another molecule's condition (a model
        that ignores its condition scores the same ELBO on both)."""
        if not len(self.heldout_ids):
            return None
        embeddings = self.heldout_embeddings
        if shuffle_conditions:
            embeddings = embeddings[np.random.default_rng(0).permutation(len(embeddings))]
        columns = {"ids": self.heldout_ids.numpy(), "cond_embeddings": embeddings}
        if self.config.task.fixed_size:
            columns["padding"] = self.padding_of(self.heldout_ids).numpy()
        return Dataset.from_dict(columns).with_format("torch")

    # ------------------------------------------------------------------ sampling
    def sample_conditions(self, n: int):
        values = self.config.task.sample_property
        if not values:
            return self.scale.unconditional(n)
        return self.scale.condition([values[i % len(values)] for i in range(n)],
                                    f"task.sample_property ({NAMES[self.config.task.property]})")

    def sample_fixed(self, n: int, seed: int | None = None) -> Fixed | None:
        """Atom counts drawn from the training molecules': padding slots and their bond slots given."""
        if not self.config.task.fixed_size:
            return None
        g = torch.Generator().manual_seed(self.config.sample.seed if seed is None else seed)
        atoms = torch.multinomial(self.atom_counts, n, replacement=True, generator=g)
        a = self.layout.max_nodes
        real = torch.arange(a)[None] < atoms[:, None]
        # only the given slots are read: padding atoms (0) and the no-bond slots on them
        ids = torch.cat([real.long(), torch.full((n, len(self.layout.rows)), self.layout.no_edge)], 1)
        return Fixed(ids, self.padding_of(ids))

    def draw(self, model, cond, n: int, seed: int, valence: bool = True, recheck: bool | None = None,
             connected: bool | None = None, guidance: float | None = None):
        """n samples of the diffusion model: (ids [n, N], nfe, seconds, share of samples the loop left
        with misfits, i.e. with an atom overfilled by tokens of one parallel step)."""
        recheck = self.config.task.recheck if recheck is None else recheck
        overrides = {} if guidance is None else {"guidance_scale": guidance}
        if recheck and valence:  # in the loop: a misfit has probability 0 under the processor
            overrides.update(remasking="recheck", remask_threshold=0.5, remask_drop=1.0)
        cfg = self.sample_config(**overrides)
        sampler = Sampler.for_model(model, cfg)
        model.eval()
        constraints = self.constraints(valence, connected)
        generator = torch.Generator().manual_seed(seed)
        start = time.perf_counter()
        result = sample_many(model, n, cfg.batch_size, sampler=sampler, cond=cond, fixed=self.sample_fixed(n, seed),
                             generator=generator, processors=[constraints])
        ids, nfe = result.ids, result.nfe
        overshoot = float(misfits(self.constraints(True, False), ids).any(1).float().mean())
        if recheck and valence:
            t = self.config.task
            ids, extra = redraw_misfits(model, ids, sampler, cond, constraints, generator, t.recheck_rounds,
                                        t.recheck_steps)
            nfe += extra
        return ids, nfe, time.perf_counter() - start, overshoot

    def generate(self, model, **sampler_overrides):
        """`ddm sample`: `draw` under the config's conditions (SampleResult, condition, seconds)."""
        from ddm.sampling import SampleResult

        cfg = self.sample_config(**sampler_overrides)
        cond = self.sample_conditions(cfg.num_samples)
        ids, nfe, seconds, _ = self.draw(model, cond, cfg.num_samples, cfg.seed)
        return SampleResult(ids, nfe, None, None, None), cond, seconds

    def decode(self, ids: torch.Tensor) -> tuple[list, list[str | None]]:
        """ids -> (rdkit molecules or None, why each is None). A layout the tokenizer refuses (padding
        inside the atoms, a bond on a padding atom: possible without the processor) is invalid, and so
        is a sample of no atoms."""
        from rdkit import RDLogger

        mols, reasons = [], []
        RDLogger.DisableLog("rdApp.*")  # the reasons are kept; no rdkit line per invalid sample
        try:
            for row in ids:
                try:
                    mol = self.tokenizer.decode(row[None])[0]
                    why = self.tokenizer.last_invalid[0]
                except ValueError as e:
                    mol, why = None, f"layout: {e}"
                if mol is not None and mol.GetNumAtoms() == 0:  # all padding: no molecule (MOSES: "" is invalid)
                    mol, why = None, "no atoms"
                mols.append(mol)
                reasons.append(why)
        finally:
            RDLogger.EnableLog("rdApp.*")
        return mols, reasons

    def write_samples(self, ids, cond, out, continuous=None) -> Path:
        path = super().write_samples(ids, cond, out, continuous)
        mols, _ = self.decode(ids)
        self.tokenizer.write_output(mols, path.parent / "samples.smi")  # an invalid sample: an empty line
        return path

    def sample_metrics(self, ids: torch.Tensor, cond) -> dict[str, float]:
        ref = self.reference()
        mols, reasons = self.decode(ids)
        out = metrics.generation_metrics(mols, ref["training_smiles"], ref["test"])
        out["valence_failures"] = sum(r is not None and "valence" in r.lower() for r in reasons) / len(mols)
        if cond is not None and cond.drop is not None and not bool(cond.drop.all()):
            requested = self.scale.values(cond)
            err = metrics.conditioning_error(requested, mols, self.config.task.property)
            out.update({f"condition_{k}": v for k, v in err.items()})
        return out

    # ------------------------------------------------------------------ evaluation
    def evaluate_model(self, model) -> dict[str, float]:
        t, s = self.config.task, self.config.sample
        start = time.perf_counter()
        ref = self.reference()
        test, training = ref["test"], ref["training_smiles"]
        rows: dict[str, dict[str, float]] = {}

        # the floor: as many training molecules as samples, against the same test molecules
        g = np.random.default_rng(s.seed)
        picks = g.choice(len(self.train_smiles), min(s.num_samples, len(self.train_smiles)), replace=False)
        train_mols = parse_all([self.train_smiles[i] for i in picks], "training SMILES")
        floor = metrics.generation_metrics(train_mols, set(), test)
        floor["novelty"] = 0.0  # they are the training set
        rows["MOSES training molecules (floor)"] = {**floor, "nfe": 0.0}
        _stage("floor: training molecules against the test split", start)

        elbo = self.heldout_elbo(model)
        shuffled = self.eval_dataset(shuffle_conditions=True)
        elbo_shuffled = None if elbo is None else self.heldout_elbo(model, data=shuffled)
        samples = {}

        def row(name: str, ids: torch.Tensor, nfe: float, seconds: float, overshoot: float | None = None) -> list:
            mols, reasons = self.decode(ids)
            figures = metrics.generation_metrics(mols, training, test)
            figures["valence_failures"] = sum(r is not None and "valence" in r.lower() for r in reasons) / len(mols)
            if overshoot is not None:
                figures["overshoot"] = overshoot
            rows[name] = {**figures, "nfe": float(nfe), "ms_per_molecule": 1000 * seconds / len(ids)}
            _stage(f"{name}: {len(ids)} samples, validity {figures['validity']:.3f}", start)
            return mols

        n = s.num_samples
        ids, nfe, sec, over = self.draw(model, self.scale.unconditional(n), n, s.seed)
        samples["diffusion"] = row("diffusion, valence processor + recheck" if t.recheck else
                                   "diffusion, valence processor", ids, nfe, sec, over)
        m = t.ablation_samples
        ids, nfe, sec, over = self.draw(model, self.scale.unconditional(m), m, s.seed + 1, valence=False)
        row("diffusion, no valence processor", ids, nfe, sec, over)
        if t.recheck:
            ids, nfe, sec, over = self.draw(model, self.scale.unconditional(m), m, s.seed + 1, recheck=False)
            row("diffusion, valence processor, no recheck", ids, nfe, sec, over)
        if t.connected:
            ids, nfe, sec, over = self.draw(model, self.scale.unconditional(m), m, s.seed + 1, connected=False)
            row("diffusion, valence processor, no connectivity rule", ids, nfe, sec, over)

        if t.baseline:
            baseline = self.baseline_model()
            _stage("autoregressive baseline trained (or loaded)", start)
            t0 = time.perf_counter()
            ids, nfe = self.baseline_sample(baseline, n, cond=self.scale.unconditional(n), seed=s.seed,
                                            processors=self.processors())
            samples["autoregressive"] = row("autoregressive, valence processor", ids, nfe, time.perf_counter() - t0)

        # conditioning: requests are test molecules' property values; the unconditional samples are scored
        # against the same requests (what ignoring the request gives)
        c = min(t.condition_samples, n, len(test[t.property]))
        requested = test[t.property][g.choice(len(test[t.property]), c, replace=False)]
        requested = np.clip(requested, self.scale.low, self.scale.high)  # the model's range (the test split may stray)
        ids, nfe, sec, _ = self.draw(model, self.scale.condition(requested), c, s.seed + 2,
                                     guidance=t.condition_guidance)
        cond_mols, _ = self.decode(ids)
        conditioning = {"conditional": metrics.conditioning_error(requested, cond_mols, t.property),
                        "unconditional": metrics.conditioning_error(requested, samples["diffusion"][:c], t.property)}
        if "autoregressive" in samples:
            conditioning["autoregressive, unconditional"] = metrics.conditioning_error(
                requested, samples["autoregressive"][:c], t.property)
        conditioning["conditional"]["validity"] = metrics.validity(cond_mols)
        _stage(f"conditioning: {c} samples for requested {NAMES[t.property]}", start)

        paths = []
        for name, mols in samples.items():
            k = t.picture_molecules
            legends = [f"{NAMES[t.property]} {property_of(mol, t.property):.2f}" if mol is not None else ""
                       for mol in mols[:k]]
            p = pictures.molecule_grid(mols[:k], self.run_dir / f"samples_{name}.png", legends)
            if p is not None:
                paths.append(p)
        k = t.picture_molecules
        legends = [f"asked {r:.2f}, got {property_of(mol, t.property):.2f}" if mol is not None else ""
                   for r, mol in zip(requested[:k], cond_mols[:k])]
        p = pictures.molecule_grid(cond_mols[:k], self.run_dir / "samples_conditional.png", legends)
        if p is not None:
            paths.append(p)

        out = {f"{name}/{key}": v for name, r in rows.items() for key, v in r.items()}
        out.update({f"conditioning/{name}/{key}": v for name, r in conditioning.items() for key, v in r.items()})
        if elbo is not None:
            out["heldout_elbo_bits_per_token"] = elbo
            out["heldout_elbo_shuffled_conditions"] = elbo_shuffled
        print(self.report(rows, conditioning, (elbo, elbo_shuffled), c))
        for p in paths:
            print(f"picture: {p}")
        return out

    def report(self, rows: dict, conditioning: dict, elbo: tuple[float | None, float | None], c: int) -> str:
        t, s = self.config.task, self.config.sample
        lines = [f"molecule task: {len(self.train_ids)} MOSES training molecules, {self.layout.length} tokens each; "
                 f"sampler {s.order} order, {s.steps} steps, recheck {t.recheck}, connectivity rule "
                 f"{t.connected}, temperature {s.temperature}; "
                 f"atom count {'drawn from the training molecules' if t.fixed_size else 'generated'}; distances "
                 f"W1 to {t.num_test} MOSES test molecules; novelty against the training molecules",
                 f"  {'':<44} {'valid':>6} {'conn.':>6} {'unique':>6} {'novel':>6} {'IntDiv':>6} "
                 + " ".join(f"{'W1 ' + NAMES[p]:>8}" for p in PROPERTIES)
                 + f" {'val.err':>7} {'overfill':>8} {'NFE':>5} {'ms/mol':>7}"]
        for name, r in rows.items():
            timing = f"{r['ms_per_molecule']:>7.1f}" if "ms_per_molecule" in r else f"{'-':>7}"
            fails = f"{r['valence_failures']:>7.3f}" if "valence_failures" in r else f"{'-':>7}"
            over = f"{r['overshoot']:>8.3f}" if "overshoot" in r else f"{'-':>8}"
            lines.append(f"  {name:<44} {r['validity']:>6.3f} {r['connected']:>6.3f} {r['uniqueness']:>6.3f} "
                         f"{r['novelty']:>6.3f} {r['int_div']:>6.3f} "
                         + " ".join(f"{r['w1_' + p]:>8.3f}" for p in PROPERTIES)
                         + f" {fails} {over} {r['nfe']:>5.0f} {timing}")
        lines.append("  valid: rdkit sanitizes (several fragments count); conn.: valid and one fragment; val.err: "
                     "share of samples rdkit refuses for a valence; overfill: share the sampling loop left with "
                     "an atom overfilled (before the recheck redraw)")
        name = NAMES[t.property]
        parts = [f"{k} MAE {v['mae']:.3f} (corr {v['corr']:.2f})" for k, v in conditioning.items()]
        lines.append(f"  conditioning on {name} ({c} requests drawn from the test split, valid samples only): "
                     + "; ".join(parts) + f"; conditional validity {conditioning['conditional']['validity']:.3f}")
        if elbo[0] is not None:
            lines.append(f"  held-out ELBO: {elbo[0]:.4f} bits per token (the atom count given); with the "
                         f"conditions shuffled among the molecules {elbo[1]:.4f} (the same if the model ignores them)")
        return "\n".join(lines)


__all__ = ["MoleculeTask", "MoleculeTaskConfig"]
