"""FITMM (ACM MM 2025): one module per idea of the paper; ``FITMM`` assembles them."""

from fitmm_core.models.fitmm.consistency import SpectralConsistency
from fitmm_core.models.fitmm.fusion import WithinBandFusion
from fitmm_core.models.fitmm.gate import ResidualBandGate
from fitmm_core.models.fitmm.information_bottleneck import BandGains, FrequencyInformationBottleneck, band_signal_noise
from fitmm_core.models.fitmm.model import FITMM
from fitmm_core.models.fitmm.representations import GraphEnhancedRepresentations
from fitmm_core.models.fitmm.spectral import SpectralDecomposition

__all__ = [
    "FITMM",
    "BandGains",
    "FrequencyInformationBottleneck",
    "GraphEnhancedRepresentations",
    "ResidualBandGate",
    "SpectralConsistency",
    "SpectralDecomposition",
    "WithinBandFusion",
    "band_signal_noise",
]
