"""Item features: text (sentence-transformers) and image (EfficientNet-Lite0 or CLIP) encoders, the
shared vector cache, and the writers of MMRec's ``text_feat.npy`` / ``image_feat.npy``."""

from fitmm_core.features.encode import encode_dataset, encode_images, encode_text
from fitmm_core.features.errors import EncoderConfigError
from fitmm_core.features.plots import projection_png

__all__ = ["EncoderConfigError", "encode_dataset", "encode_images", "encode_text", "projection_png"]
