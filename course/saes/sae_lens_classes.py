"""The one architecture of ours that SAE Lens 6.54 lacks, a TopK transcoder, taught to SAE Lens.

SAE Lens has ReLU and JumpReLU transcoders and TopK SAEs, but no TopK transcoder. Our
transcoders (chapter 7) are TopK, so their ``cfg.json`` says ``"architecture":
"topk_transcoder"``; after :func:`register_with_sae_lens`, ``sae_lens.SAE.load_from_disk``
loads them with the same encodings as ours. Without it SAE Lens refuses the file rather than
loading a ReLU transcoder whose encodings would silently differ.
"""

from __future__ import annotations

from dataclasses import dataclass

TOPK_TRANSCODER = "topk_transcoder"


def register_with_sae_lens() -> None:
    """Register :data:`TOPK_TRANSCODER` with SAE Lens (idempotent). Needs ``pip install sae-lens``."""
    try:
        import sae_lens
        from sae_lens.registry import SAE_CLASS_REGISTRY
        from sae_lens.saes.topk_sae import TopK
        from sae_lens.saes.transcoder import Transcoder, TranscoderConfig
    except ImportError as e:
        raise ImportError("register_with_sae_lens needs SAE Lens: pip install sae-lens") from e
    if TOPK_TRANSCODER in SAE_CLASS_REGISTRY:
        return

    @dataclass
    class TopKTranscoderConfig(TranscoderConfig):
        k: int = 16

        @classmethod
        def architecture(cls) -> str:
            return TOPK_TRANSCODER

    class TopKTranscoder(Transcoder):
        """A transcoder whose features are the top ``k`` pre-activations, ReLU'd (as ours)."""

        def get_activation_fn(self):
            return TopK(self.cfg.k)

        @classmethod
        def from_dict(cls, config_dict):
            return cls(TopKTranscoderConfig.from_dict(config_dict))

    sae_lens.register_sae_class(TOPK_TRANSCODER, TopKTranscoder, TopKTranscoderConfig)
