"""MLP neurons as key–value memories: activations over a text stream, top contexts (keys),
output rows read through the unembedding (values), and how often the two agree.

    from course.neurons import text_stream, collect_activations, top_contexts, value_logits
    stream = text_stream(model, n_rows=128, row_len=64, seed=0)
    acts = collect_activations(model, stream.tokens)        # [layer, row, pos, d_mlp]
"""

from course.neurons.activations import collect_activations
from course.neurons.agreement import agreement_by_layer, next_token_agreement
from course.neurons.keys import NeuronDescription, describe_neuron, top_contexts
from course.neurons.stream import TextStream, text_stream
from course.neurons.values import value_logits, value_tokens

__all__ = ["collect_activations", "agreement_by_layer", "next_token_agreement", "NeuronDescription",
           "describe_neuron", "top_contexts", "TextStream", "text_stream", "value_logits", "value_tokens"]
