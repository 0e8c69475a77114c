"""Sparse dictionaries (SAEs, and transcoders in chapter 7) on the course model's activations.

    from course.saes import train_sae, evaluate, load_shipped_sae
    sae = load_shipped_sae(model)                 # course/assets/course-sae, SAE Lens's format
    print(evaluate(model, sae))                   # L0, explained variance, dead/dense, loss recovered
    f = sae.encode(x)                             # [..., d_sae]

The model (:class:`SparseDictionary`) and trainer take an input site and a target site: an SAE
reads and reconstructs one site; a transcoder reads the MLP's input and predicts its output.
"""

from course.saes.activations import ActivationStream, read_sites
from course.saes.io import (RETRAIN, SHIPPED, StaleSAEError, check_fresh, load_sae, load_shipped_sae,
                            model_fingerprint, save_sae)
from course.saes.metrics import Evaluation, evaluate, evaluation_tokens, explained_variance, firing_rates, l0, spliced_loss
from course.saes.model import DictionaryConfig, SparseDictionary, dictionary_loss, reconstruction_loss
from course.saes.sae_lens_classes import register_with_sae_lens
from course.saes.train import TrainLog, resample_dead, train, train_sae, training_step

__all__ = ["ActivationStream", "read_sites", "RETRAIN", "SHIPPED", "StaleSAEError", "check_fresh", "load_sae",
           "load_shipped_sae", "model_fingerprint", "save_sae", "Evaluation", "evaluate", "evaluation_tokens",
           "explained_variance", "firing_rates", "l0", "spliced_loss", "DictionaryConfig", "SparseDictionary",
           "dictionary_loss", "reconstruction_loss", "register_with_sae_lens", "TrainLog", "resample_dead", "train", "train_sae", "training_step"]
