"""Training, evaluating and shipping the course's artifacts: what maintainers run, never students.

- :mod:`course.training.train`: the course GPT-2 (its defaults reproduce the shipped model);
- :mod:`course.training.tokenizer`: its tokenizer;
- :mod:`course.training.evaluate`: the figures on held-out data, and the floors;
- :mod:`course.training.card`: the model card; :mod:`course.training.reproduce`: the bit-for-bit check;
- :mod:`course.training.ship`: a run into ``course/assets``, with everything built on it;
- :mod:`course.training.modular`: the one-layer modular-addition model of chapter 6;
- :mod:`course.training.transcoders`: the shipped transcoders of chapter 7.

The toolkit (``course.lens``, ``course.data``, ``course.models``, …) never imports this package.
"""
