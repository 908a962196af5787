"""Errors raised by the feature encoders."""

from __future__ import annotations


class EncoderConfigError(ValueError):
    """An encoder setting that cannot work: unknown name, weights not found offline, no usable input.

    The message names the setting and says what to do about it.
    """
