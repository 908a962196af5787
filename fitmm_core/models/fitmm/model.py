"""FITMM: frequency-aware multimodal recommendation with a frequency-domain information bottleneck."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fitmm_core.graphs import mixed_knn_item_graph, normalized_user_item_adjacency
from fitmm_core.models.base import BprBatch, ModelInputs
from fitmm_core.models.fitmm.consistency import SpectralConsistency
from fitmm_core.models.fitmm.fusion import WithinBandFusion
from fitmm_core.models.fitmm.gate import ResidualBandGate
from fitmm_core.models.fitmm.information_bottleneck import FrequencyInformationBottleneck
from fitmm_core.models.fitmm.representations import GraphEnhancedRepresentations
from fitmm_core.models.fitmm.spectral import SPECTRAL_BASES, SpectralDecomposition
from fitmm_core.models.losses import embedding_l2, ranking_loss
from fitmm_core.models.modalities import modality_features
from fitmm_core.models.propagation import GraphRecommender


@dataclass(frozen=True)
class FITMMForward:
    """What one forward pass computes for the requested nodes (rows in request order)."""

    ego: torch.Tensor
    final: torch.Tensor
    coefficients: torch.Tensor | None
    gate_logits: torch.Tensor | None


class FITMM(GraphRecommender):
    r"""FITMM: separate modalities into orthogonal bands, fuse within bands, gate bands residually.

    For every node (user or item), with :math:`\bar e` its graph-enhanced ID representation
    (LightGCN's layer mean, plus :math:`\hat S^{L_m} e_i` for items), :math:`z`
    its ID embedding and :math:`X_m` its graph-enhanced modality representations
    (:class:`GraphEnhancedRepresentations`):

    .. math::
        c_b = \sum_m w_{b,m} X_m P_b, \qquad
        h = \bar e + \sum_{b=1}^{B} g_b(z)\, c_b, \qquad
        \hat y_{ui} = h_u^\top h_i,

    with :math:`P_b` the band projectors (:class:`SpectralDecomposition`), :math:`w` the
    within-band fusion weights (:class:`WithinBandFusion`) and :math:`g_b` the residual gate
    (:class:`ResidualBandGate`). Objective on a batch :math:`\mathcal B` of triples :math:`(u,i,j)`:

    .. math::
        \mathcal L = \mathcal L_{rank} + \lambda_{IB}\mathcal L_{IB} + \lambda_C \mathcal L_C
            + \lambda_{reg}\frac{1}{|\mathcal B|}\sum(\lVert z_u\rVert^2 + \lVert z_i\rVert^2 + \lVert z_j\rVert^2),

    :math:`\mathcal L_{rank}` BPR (``loss="bpr"``) or the pairwise BCE of the authors' release
    (``loss="bce"``), :math:`\mathcal L_{IB}` the frequency-domain IB term on the gates of the
    batch's distinct nodes, with the band signal and noise powers estimated on those nodes
    (:class:`FrequencyInformationBottleneck`), :math:`\mathcal L_C` the cross-modal spectral
    consistency of the same nodes (:class:`SpectralConsistency`). A training step propagates the
    ID embeddings over the whole graph (as LightGCN) and computes the rest for the batch's nodes
    only: every later stage is row-wise.

    Switches (one ablation each): ``use_spectral=False`` treats the whole space as one band;
    ``use_gate=False`` fixes every gate at 1 (plain sum; the IB term, which acts on the gates, is
    then 0); ``use_ib=False`` and ``use_consistency=False`` drop those terms;
    ``smooth_item_ids=False`` drops the item-ID smoothing on the item graph.
    With one modality there is no cross-modal signal: fusion weights are 1, and the IB and
    consistency terms are 0. Without modalities FITMM is LightGCN (with ``reg_weight``).

    The covariance basis is recomputed once per epoch in :meth:`pre_epoch` and on first use; the
    kNN item graph is built once from the raw features. Nothing is written to disk.

    Args:
        inputs: sizes, training pairs and item features per modality.
        embedding_dim: ``d``.
        num_layers: LightGCN layers on the user-item graph.
        n_mm_layers: propagation layers on the item-item graph.
        knn_k: neighbours per item in each modality's kNN graph.
        image_weight: weight of the image graph in the mixed item graph (text gets the rest).
        smooth_item_ids: add the item-graph smoothing :math:`\hat S^{L_m} e_i` of the item ID
            embeddings to the items' ID representation (FREEDOM/LATTICE).
        num_bands: ``B``.
        spectral_basis: ``"covariance"`` or ``"dct"``.
        feature_rank: principal directions of the raw features fed to the modality projections.
        lambda_ib: weight of the IB term.
        ib_beta: IB trade-off; bands with Wiener gain at most ``1 / ib_beta`` are shut off.
        lambda_consistency: weight of the consistency term.
        consistency: ``"cosine"`` or ``"infonce"``.
        temperature: InfoNCE temperature.
        reg_weight: L2 weight on the batch's ID embeddings.
        loss: ``"bpr"`` or ``"bce"``.
        use_spectral, use_gate, use_ib, use_consistency: component switches.
    """

    def __init__(
        self,
        inputs: ModelInputs,
        embedding_dim: int = 64,
        num_layers: int = 2,
        n_mm_layers: int = 1,
        knn_k: int = 10,
        image_weight: float = 0.1,
        smooth_item_ids: bool = True,
        num_bands: int = 3,
        spectral_basis: str = "covariance",
        feature_rank: int = 256,
        lambda_ib: float = 0.1,
        ib_beta: float = 2.0,
        lambda_consistency: float = 0.01,
        consistency: str = "cosine",
        temperature: float = 0.2,
        reg_weight: float = 1e-4,
        loss: str = "bpr",
        use_spectral: bool = True,
        use_gate: bool = True,
        use_ib: bool = True,
        use_consistency: bool = True,
    ) -> None:
        super().__init__()
        if spectral_basis not in SPECTRAL_BASES:
            raise ValueError(f"spectral_basis={spectral_basis!r}; expected one of {SPECTRAL_BASES}")
        if loss not in ("bpr", "bce"):
            raise ValueError(f"loss={loss!r}; expected 'bpr' or 'bce'")
        weights = {"lambda_ib": lambda_ib, "lambda_consistency": lambda_consistency, "reg_weight": reg_weight}
        for name, value in weights.items():
            if value < 0:
                raise ValueError(f"{name}={value} must be non-negative")
        self.n_users, self.n_items = inputs.n_users, inputs.n_items
        self.loss_kind = loss
        self.lambda_ib, self.lambda_consistency, self.reg_weight = lambda_ib, lambda_consistency, reg_weight
        self.use_spectral, self.use_gate = use_spectral, use_gate
        self.use_ib, self.use_consistency = use_ib, use_consistency

        features = modality_features(inputs)
        adjacency = normalized_user_item_adjacency(self.n_users, self.n_items, inputs.train_pairs)
        item_graph = mixed_knn_item_graph(features, knn_k, image_weight) if features else None
        self.encoder = GraphEnhancedRepresentations(
            self.n_users, self.n_items, adjacency, item_graph, features,
            embedding_dim, num_layers, n_mm_layers, feature_rank, smooth_item_ids,
        )
        self.num_modalities = len(features)
        if use_spectral:
            self.spectral = SpectralDecomposition(embedding_dim, num_bands, spectral_basis)
        else:  # one band spanning the whole space (its projector is the identity)
            self.spectral = SpectralDecomposition(embedding_dim, 1, "dct")
        self.fusion = WithinBandFusion(self.spectral.num_bands, max(self.num_modalities, 1))
        self.gate = ResidualBandGate(embedding_dim, self.spectral.num_bands)
        self.information_bottleneck = FrequencyInformationBottleneck(ib_beta)
        self.consistency = SpectralConsistency(consistency, temperature)

    @property
    def num_bands(self) -> int:
        return self.spectral.num_bands

    def pre_epoch(self) -> None:
        """Refresh the covariance basis from the current (detached) modality representations."""
        if self.num_modalities == 0 or self.spectral.basis_kind != "covariance":
            return
        with torch.no_grad():
            self.spectral.refresh(self.encoder.modality_representations())
        self.clear_inference_cache()

    def forward(self, nodes: torch.Tensor | None = None) -> FITMMForward:
        """Representations of ``nodes`` (indices into users ``0..U-1`` then items ``U..U+I-1``;
        all nodes when ``None``). Everything after the full ID propagation is row-wise, so a batch
        only pays for its own nodes."""
        ego, base, modality = self.encoder(nodes)
        if modality is None:
            return FITMMForward(ego, base, None, None)
        if self.spectral.needs_refresh:
            self.spectral.refresh(modality if nodes is None else self.encoder.modality_representations())
        coefficients = self.spectral.coefficients(modality)
        components = self.spectral.components(self.fusion(coefficients, self.spectral.slices))
        if self.use_gate:
            logits = self.gate.logits(ego)
            final = ResidualBandGate.combine(base, components, torch.sigmoid(logits))
        else:
            logits = None
            final = base + components.sum(dim=1)
        return FITMMForward(ego, final, coefficients, logits)

    def representations(self) -> tuple[torch.Tensor, torch.Tensor]:
        final = self().final
        return final[: self.n_users], final[self.n_users :]

    def calculate_loss(self, batch: BprBatch) -> dict[str, torch.Tensor]:
        """Loss terms of a batch; the IB statistics are estimated on the batch's distinct nodes."""
        triples = torch.stack([batch.users, batch.pos_items + self.n_users, batch.neg_items + self.n_users])
        nodes, rows = torch.unique(triples, return_inverse=True)
        out = self(nodes)
        user, pos, neg = out.final[rows[0]], out.final[rows[1]], out.final[rows[2]]
        rank = ranking_loss(self.loss_kind, (user * pos).sum(-1), (user * neg).sum(-1))
        reg = self.reg_weight * embedding_l2(out.ego[rows[0]], out.ego[rows[1]], out.ego[rows[2]])
        ib = consistency = rank.new_zeros(())
        if out.coefficients is not None and self.num_modalities >= 2:
            if self.use_ib and out.gate_logits is not None:
                gains = self.information_bottleneck.gains(out.coefficients, self.spectral.slices)
                ib = self.information_bottleneck(out.gate_logits, gains)
            if self.use_consistency:
                consistency = self.consistency(out.coefficients, self.spectral.slices)
        total = rank + self.lambda_ib * ib + self.lambda_consistency * consistency + reg
        return {"loss": total, self.loss_kind: rank, "ib": ib, "consistency": consistency, "reg": reg}

    @torch.no_grad()
    def band_gains(self) -> dict[str, list[float]]:
        """Per-band figures for logging: mean gate over all nodes (``gate``), fusion weight of each
        modality (``weight_<modality>``) and, with two or more modalities, the Wiener gain
        (``wiener``), the IB-optimal gate (``target_gate``) and shrinkage (``shrinkage``), with the
        signal and noise powers estimated on all nodes."""
        out = self()
        if out.coefficients is None:
            return {}
        figures: dict[str, list[float]] = {}
        gates = torch.sigmoid(out.gate_logits) if out.gate_logits is not None else torch.ones(1, self.num_bands)
        figures["gate"] = gates.mean(dim=0).tolist()
        weights = self.fusion.weights()
        for index, name in enumerate(self.encoder.modalities):
            figures[f"weight_{name}"] = weights[:, index].tolist()
        if self.num_modalities >= 2:
            gains = self.information_bottleneck.gains(out.coefficients, self.spectral.slices)
            figures["wiener"] = gains.wiener.tolist()
            figures["target_gate"] = gains.target_gate.tolist()
            figures["shrinkage"] = gains.shrinkage.tolist()
        return figures
