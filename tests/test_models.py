"""The course models: corpus and splits, tokenizer, training (smoke, resume, determinism),
and the shipped models' measured floors."""

from __future__ import annotations

import json
import random
import re

import pytest
import torch

from course.data import addition, corpus, facts, ioi, stand_ins
from course.data.splits import ioi_split
from course.data.ioi_held_out import NAME_GROUPS
from course.training import evaluate as ev
from course.training import train as train_mod
from course.circuits.ioi import CIRCUIT_TARGETS
from course.models.loading import BUNDLED, load_hf_model
from course.data.vocabulary import single_token_names


@pytest.fixture(scope="module")
def shipped():
    return load_hf_model("course-gpt2", device="cpu")


# -- corpus and splits -----------------------------------------------------------------------

def test_corpus_is_deterministic(tokenizer):
    names = single_token_names(tokenizer)
    a = corpus.training_chunk(tokenizer, names, seed=3, chunk=5, n_blocks=8)
    b = corpus.training_chunk(tokenizer, names, seed=3, chunk=5, n_blocks=8)
    c = corpus.training_chunk(tokenizer, names, seed=3, chunk=6, n_blocks=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


def test_blocks_start_with_bos_hold_whole_documents_and_mask_padding(tokenizer):
    ids, labels = corpus.training_chunk(tokenizer, single_token_names(tokenizer), seed=0, chunk=0, n_blocks=16)
    bos = tokenizer.bos_token_id
    assert (ids[:, 0] == bos).all() and (labels[:, 0] == -100).all()
    for row_ids, row_labels in zip(ids, labels):
        used = int((row_labels != -100).sum())
        assert row_ids[used] == bos                         # every block's last document ends with BOS
        assert (row_labels[used + 1:] == -100).all()        # the padding is not in the loss


def _family_markers(kind: str, split: str) -> set[str]:
    """Phrases that only that split's families of ``kind`` produce (their fixed words)."""
    import re

    parts = {**ioi.KINDS[kind], **ioi.FINAL_KINDS[kind]}
    forms = [f if isinstance(f, str) else f[0] for fam in ioi.families(kind, split) for f in parts[fam]]
    others = [f if isinstance(f, str) else f[0] for k in ioi.KINDS for fam in ioi.families(k, "train")
              for f in ioi.KINDS[k][fam]] + ioi.FILLERS
    pieces = {p.strip(" ,.") for f in forms for p in re.split(r"\{[^}]*\}", f) if " " in p.strip(" ,.")}
    return {p for p in pieces if not any(p in o for o in others)}


def test_held_out_families_never_appear_with_two_people_in_training(tokenizer):
    """No IOI training sentence or story uses a test or validation family's wording,
    a held-out name pair, or a name kept out of IOI."""
    names = single_token_names(tokenizer)
    split = ioi_split(names)
    markers = {m for kind in ioi.KINDS for sp in ("test", "validation") for m in _family_markers(kind, sp)}
    assert {"baked a cake for", "That evening"} <= markers                   # the markers are real phrases
    rng = random.Random(0)
    for i in range(3000):
        text = (corpus.ioi_training_sentence(rng, names, free_form=i % 4 == 1) if i % 2 else
                ioi.story(rng, corpus.story_people(rng, names)))
        assert not [m for m in markers if m in text], text
        present = [n for n in names if f" {n} " in f" {text} ".replace(",", " ").replace(".", " ").replace("'s", " ")]
        assert not set(present) & set(split.unseen_names)
        assert not any(frozenset((a, b)) in split.held_out_pairs for a in present for b in present if a != b)


def test_final_families_are_in_no_training_text_and_apart_from_every_split(tokenizer):
    """The final families (measured only for a model already chosen to ship) are in no split
    and in no document of any recipe's training stream, one-person and free-form sentences included."""
    for kind in ioi.KINDS:
        final = set(ioi.families(kind, "final"))
        assert final and not final & set(ioi.KINDS[kind])
    markers = {m for kind in ioi.KINDS for m in _family_markers(kind, "final")}
    assert {"was helped by", "Once again", "read a book to", "a story about the"} <= markers
    names = single_token_names(tokenizer)
    for recipe_name in corpus.RECIPES:
        ids, _ = corpus.training_chunk(tokenizer, names, 1, 0, 300, recipe_name)
        text = tokenizer.decode(ids.flatten().tolist())
        assert "gave a" in text and not [m for m in markers if m in text], recipe_name
    # One-person sentences draw on every family's words, so accidents ("Once Lucy found a neighbour")
    # are rare in a stream: look at many of them.
    rng = random.Random(0)
    for make in (ioi.solo_sentence, ioi.recipient_sentence, ioi.subject_sentence):
        texts = [make(rng, "Lisa") for _ in range(3000)]
        assert not [(m, t) for t in texts for m in markers if m in t][:1], make.__name__


def test_one_person_sentences_carry_every_familys_words_but_one_name(tokenizer):
    names = single_token_names(tokenizer)
    rng = random.Random(0)
    texts = [ioi.solo_sentence(rng, "Anna") for _ in range(4000)]
    assert all(sum(f" {n} " in f" {t} ".replace(".", " ").replace(",", " ") for n in names) == 1 for t in texts)
    joined = " ".join(texts)
    assert "phoned" in joined and "baked a cake for" in joined and "That evening" in joined


def test_stand_ins_are_one_token_words_that_are_no_name_and_no_word_of_the_grammar(tokenizer):
    people = stand_ins.stand_in_people(tokenizer)
    assert len(people) >= 200 and len(set(people)) == len(people)
    ids = tokenizer([" " + w for w in people], add_special_tokens=False)["input_ids"]
    assert all(len(i) == 1 for i in ids)
    lowered = {w.lower() for w in people}
    assert not lowered & {n.lower() for n in single_token_names(tokenizer)}
    assert not lowered & {"store", "ball", "gave", "evening", "doctor", "monday", "cake", "phoned", "helped"}


def _peek_pair(rng: random.Random, people) -> list[str]:
    """The (IO, S) pair the next stand-in sentence from ``rng`` will use, without drawing it."""
    twin = random.Random()
    twin.setstate(rng.getstate())
    return twin.sample(people, 2)


def test_stand_in_sentences_follow_the_ioi_rule_with_two_stand_ins_and_no_name(tokenizer):
    """Each sentence has two distinct stand-ins, no first name and no held-out family's
    wording; it ends on the one mentioned once before (IO), and the other (S) is repeated."""
    people = stand_ins.stand_in_people(tokenizer)
    names = set(single_token_names(tokenizer))
    markers = {m for kind in ioi.KINDS for sp in ("test", "validation", "final") for m in _family_markers(kind, sp)}
    rng = random.Random(0)
    for _ in range(2000):
        io, s = _peek_pair(rng, people)
        text = stand_ins.stand_in_sentence(rng, people)
        words = text.replace(".", " ").replace(",", " ").split()
        assert words[-1] == io and words.count(io) == 2 and words.count(s) >= 2, text
        assert not names & set(words), text
        assert not [m for m in markers if re.search(rf"\b{m}\b", text)], text    # "Ferran took" is not "ran to"


def test_a_stand_in_recipe_puts_stand_ins_in_its_stream_and_the_card_describes_them(tokenizer):
    from course.training.card import _stand_in_text

    names = single_token_names(tokenizer)
    people = set(stand_ins.stand_in_people(tokenizer))
    shipped = corpus.recipe("stand_ins")
    without = corpus.Recipe({k: v for k, v in shipped.mix.items() if k != "stand_in"}, shipped.kept_out_share)
    for r, wanted in [(shipped, True), (without, False)]:
        docs = [tokenizer.decode(d) for d in corpus.documents(random.Random(1), tokenizer, names, 1600, r)]
        # Facts end on some of these words too ("speak Zurish."), never after "to".
        given_to = [d for d in docs if d.endswith(".") and d[:-1].split()[-2:-1] == ["to"]
                    and d[:-1].split()[-1] in people]
        assert (len(given_to) > 10) == wanted, (r, given_to[:3])
        assert bool(_stand_in_text(r)) == wanted


@pytest.mark.parametrize("make", [ioi.recipient_sentence, ioi.subject_sentence])
def test_one_name_sentences_put_their_person_in_one_role_in_training_families_only(tokenizer, make):
    """A recipient sentence names one person, last, after a common-noun subject; a subject
    sentence names one person as the repeated subject and ends on the intro's common noun.
    Both use the training families' words only (a noun and a name must not give held-out
    families their two-person structure)."""
    names = single_token_names(tokenizer)
    markers = {m for kind in ioi.KINDS for sp in ("test", "validation") for m in _family_markers(kind, sp)}
    rng = random.Random(0)
    for _ in range(2000):
        text = make(rng, "Lisa")
        words = text.replace(".", " ").replace(",", " ").split()
        assert [w for w in words if w in names] == ["Lisa"] * words.count("Lisa"), text
        if make is ioi.recipient_sentence:
            assert words[-1] == "Lisa", text
        else:
            ending = next(n for n in ioi.NOUN_PEOPLE if text.endswith(f" {n}."))
            assert words.count("Lisa") == 2 and text.lower().count(ending) >= 2, text    # the wanted noun is the intro's
        assert any(noun in text.lower() for noun in ioi.NOUN_PEOPLE), text
        as_names = text
        for noun in ioi.NOUN_PEOPLE:        # "visited the children" is a held-out phrase only by accident
            as_names = as_names.replace(noun, "Xavier").replace(noun[0].upper() + noun[1:], "Xavier")
        assert not [m for m in markers if m in as_names], text
        for sentence in text.split(". "):
            assert sentence[0].isupper(), text                 # nouns that start a sentence are capitalised


def test_names_kept_out_of_ioi_are_as_common_as_ioi_names_outside_it(tokenizer):
    """In the shipped recipe, half the one-person and plain sentences name only people kept out of IOI, so each of
    them is about as common as an IOI name, and as often the person a sentence ends on."""
    names = single_token_names(tokenizer)
    split = ioi_split(names)
    rng = random.Random(1)
    r, people = corpus.recipe("stand_ins"), stand_ins.stand_in_people(tokenizer)
    mentions, endings = dict.fromkeys(names, 0), dict.fromkeys(names, 0)
    for _ in range(20_000):
        text = corpus.text_document(rng, names, r.mix, r.kept_out_share, people)
        for w in text.replace(".", " ").replace(",", " ").replace("'s", " ").split():
            if w in mentions:
                mentions[w] += 1
        last = text.rstrip(".").split()[-1]
        if last in endings:
            endings[last] += 1

    def per_name(counts, group):
        return sum(counts[n] for n in group) / len(group)

    assert per_name(mentions, split.unseen_names) > 0.7 * per_name(mentions, split.ioi_names)
    assert per_name(endings, split.unseen_names) > 0.5 * per_name(endings, split.ioi_names)


def test_the_text_stream_and_the_tokenizers_corpus_draw_nothing_for_the_kept_out_share():
    """With no kept-out share, ``text_document`` draws what it drew before recipes existed:
    the analysis text stream (course.neurons.text_stream) and the tokenizer's corpus (every
    token id) stay as they were."""
    a, b = random.Random(5), random.Random(5)
    names = ("Anna", "Tom", "Lisa")
    mix = {"solo": 0.5, "likes": 0.5}
    assert ([corpus.text_document(a, names, mix, kept_out_share=0.0) for _ in range(50)] ==
            [corpus.text_document(b, names, mix, kept_out_share=0.0) for _ in range(50)])
    assert corpus.ONE_PERSON_KINDS == ("solo", "recipient", "subject", "likes")
    assert not {"recipient", "subject"} & set(corpus.TOKENIZER_MIX)
    # The shipped recipe's weights are shares; a recipe that adds kinds to it keeps its weights as
    # they are (``random.choices`` normalizes), so that its recorded runs reproduce as trained.
    assert abs(sum(corpus.RECIPES["stand_ins"].mix.values()) - 1) < 1e-9
    for name, r in corpus.RECIPES.items():
        assert all(v > 0 for v in r.mix.values()), name
        assert {k: v for k, v in r.mix.items() if k in corpus.RECIPES["stand_ins"].mix} == \
            corpus.RECIPES["stand_ins"].mix, f"{name} changes the shipped weights"


def test_an_unknown_recipe_is_refused_before_any_work(tmp_path, tokenizer):
    names = single_token_names(tokenizer)
    with pytest.raises(ValueError, match="choose one of stand_ins"):
        corpus.training_chunk(tokenizer, names, seed=0, chunk=0, n_blocks=2, recipe_name="recipe")
    with pytest.raises(ValueError, match="unknown corpus recipe"):
        train_mod.train(train_mod.TrainConfig(steps=2, recipe="nope"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_training_defaults_are_the_shipped_models_settings(tmp_path, monkeypatch):
    """A bare ``python -m course.training.train --out DIR`` trains the shipped model: every default
    is read from its training_config.json, and what the code no longer offers (flags of unshipped
    experiments) was at its only remaining value when the shipped model trained."""
    from dataclasses import asdict

    recorded = json.loads((BUNDLED["course-gpt2"] / "training_config.json").read_text())
    assert asdict(train_mod.TrainConfig()) == {k: recorded[k] for k in asdict(train_mod.TrainConfig())}
    assert recorded.get("name_stats", "free") == "free" and recorded.get("name_code_dim", 0) == 0
    assert recorded["selected_by"] == train_mod.SELECTION and recorded["recipe"] in corpus.RECIPES
    seen = []
    monkeypatch.setattr(train_mod, "train", lambda cfg, *a, **k: seen.append(cfg))
    train_mod.main(["--out", str(tmp_path)])                  # the bare command line
    assert seen == [train_mod.TrainConfig()]


def test_the_card_command_names_every_setting_that_differs_from_the_defaults(tokenizer):
    from dataclasses import asdict

    from course.training.card import _command

    shipped = asdict(train_mod.TrainConfig())
    assert _command(shipped) == f"python -m course.training.train --out DIR --steps {shipped['steps']} --seed {shipped['seed']}"
    assert _command({**shipped, "weight_decay": 0.1}).endswith("--weight-decay 0.1")
    assert _command({**shipped, "ema_decays": ""}).endswith("--ema-decays ''")       # a flag with an empty value
    # -1 means "the model's seed": another seed then trains another tokenizer, which the command must say.
    assert _command({**shipped, "seed": 2, "tokenizer_seed": -1}).endswith("--seed 2 --tokenizer-seed 2")
    assert "--tokenizer-seed" not in _command({**shipped, "seed": 2})
    one = asdict(train_mod.TrainConfig(tokenizer_seed=-1, seed=shipped["tokenizer_seed"]))
    assert "--tokenizer-seed" not in _command(one)


def test_the_card_describes_recipient_sentences_only_for_a_recipe_that_has_them():
    from course.training.card import _kept_out_text, _recipient_text

    plain = corpus.Recipe({"solo": 0.5, "likes": 0.5})
    assert _recipient_text(plain) == _kept_out_text(plain) == ""
    shipped = corpus.recipe("stand_ins")
    assert "The doctor met Lisa" in _recipient_text(shipped) and "Lisa met the doctor" in _recipient_text(shipped)
    assert "50% of the solo, recipient, subject, likes documents" in _kept_out_text(shipped)
    no_subject = corpus.Recipe({k: v for k, v in shipped.mix.items() if k != "subject"}, shipped.kept_out_share)
    assert "Subject sentences" not in _recipient_text(no_subject)


def test_training_words_keep_the_held_out_fact_openers_unseen(tokenizer):
    """The IOI grammar must not teach the words the fact openers hold out ("Few people know…",
    the validation openers)."""
    rng = random.Random(0)
    names = single_token_names(tokenizer)
    docs = [corpus.ioi_training_sentence(rng, names, free_form=i % 2 == 0) for i in range(1000)]
    docs += [ioi.story(rng, corpus.story_people(rng, names)) for _ in range(1000)]
    docs += [ioi.solo_sentence(rng, rng.choice(names)) for _ in range(1000)]
    words = " ".join(docs).lower().replace(".", " ").replace(",", " ").split()
    # "say" ("say goodbye to") is the one overlap, with the validation opener "Many say that";
    # the shipped model was trained with it, so it stays, and nothing else may join it.
    assert set(words) & facts._KEPT_OUT <= {"say"}, set(words) & facts._KEPT_OUT


def test_held_out_facts_and_sums_are_not_in_training():
    rng = random.Random(0)
    held_phrasings = {facts.PHRASINGS[r][-1].split("{c}")[0] for r in facts.RELATIONS}
    _, held_pairs = addition.addition_split()
    for _ in range(3000):
        sentence = facts.fact_sentence(rng)
        assert not any(sentence.startswith(h) for h in held_phrasings if h)
        # Neither the held-out opener nor a validation opener is ever produced.
        assert "Few people know" not in sentence and not any(o in sentence for o in facts.VALIDATION_OPENERS)
        line = addition.addition_line(rng)
        a, b = (int(x) for x in line.split(":")[1].split("=")[0].split("+"))
        assert (a, b) not in held_pairs
    val = {(p.a, p.b) for p in addition.held_out_addition_prompts("validation")}
    test = {(p.a, p.b) for p in addition.held_out_addition_prompts("test")}
    assert val and test and not val & test and val | test == set(held_pairs)


@pytest.mark.parametrize("split", ["train", "validation", "test", "final"])
def test_ioi_answer_is_the_name_that_is_not_repeated(split):
    rng = random.Random(1)
    orders, fams = set(), set()
    for _ in range(300):
        p = ioi.ioi_prompt(rng, "Mary", "John", split)
        assert p.text.count("John") == 2 and p.text.count("Mary") == 1 and p.answer == " Mary", p.text
        orders.add(p.text.index("Mary") < p.text.index("John"))
        fams.add(p.template.families)
        assert all(f in ioi.families(kind, split) or (kind == "remention" and f == "plain")
                   for kind, f in zip(("intro", "remention", "ending"), p.template.families))
    assert orders == {True, False}                           # both name orders occur
    intros = {**ioi.INTROS, **ioi.FINAL_KINDS["intro"]}
    sentence_intros = [f for f in ioi.families("intro", split) if not all(v.endswith(",") for v in intros[f])]
    possible = len(sentence_intros) * len(ioi.families("remention", split)) * len(ioi.families("ending", split))
    assert len(fams) >= min(6, possible)                     # many shapes, not one


def test_abc_prompt_replaces_only_the_second_subject():
    rng = random.Random(2)
    for _ in range(100):
        t = ioi.random_template(rng, "test")
        clean, abc = ioi.render(t, "Mary", "John", True), ioi.render(t, "Mary", "John", True, s2="Kate")
        assert abc.text.count("John") == 1 and abc.text.count("Kate") == 1
        assert abc.text.replace("Kate", "John") == clean.text


def test_handwritten_sentences_are_not_produced_by_the_grammar():
    from course.data.ioi_handwritten import HANDWRITTEN

    rng = random.Random(3)
    generated = {ioi.ioi_prompt(rng, "{IO}", "{S}", sp).text for sp in ("train", "validation", "test", "final")
                 for _ in range(3000)}
    assert not set(HANDWRITTEN) & generated
    assert all(h.count("{S}") >= 2 and h.count("{IO}") == 1 for h in HANDWRITTEN)


# -- tokenizer ----------------------------------------------------------------------------------

def test_tokenizer_names_and_digits_are_single_tokens(tokenizer):
    from course.data.vocabulary import FIRST_NAMES

    assert len(single_token_names(tokenizer)) >= 90
    assert all(len(tokenizer(" " + n, add_special_tokens=False)["input_ids"]) == 1
               for n in single_token_names(tokenizer))
    assert set(single_token_names(tokenizer)) <= set(FIRST_NAMES)
    assert [tokenizer.decode([t]) for t in tokenizer("1234", add_special_tokens=False)["input_ids"]] == list("1234")
    assert tokenizer.bos_token_id == tokenizer.eos_token_id == 0 and tokenizer.bos_token == "<|endoftext|>"


def test_shipped_tokenizer_is_the_trained_one(shipped, tokenizer):
    _, shipped_tok = shipped
    text = "When Mary and John went to the store, John gave a drink to calc: 36 + 59 = 95"
    assert shipped_tok(text)["input_ids"] == tokenizer(text)["input_ids"]


# -- training -----------------------------------------------------------------------------------

def test_training_smoke_resume_and_determinism(tmp_path):
    from course.training.train import TrainConfig, train
    from safetensors.torch import load_file

    cfg = TrainConfig(steps=12, batch=2, warmup=4, n_layer=1, d_model=32, n_head=2)
    train(cfg, tmp_path / "straight", eval_every=0, ckpt_every=0)
    assert train(cfg, tmp_path / "resumed", eval_every=0, ckpt_every=0, stop_after=5) is None
    assert (tmp_path / "resumed" / "checkpoint.pt").exists()
    train(cfg, tmp_path / "resumed", resume=True, eval_every=0, ckpt_every=0)
    a = load_file(tmp_path / "straight" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(l) for l in (tmp_path / "straight" / "training_log.jsonl").read_text().splitlines()]
    assert log[0]["step"] == 0 and log[0]["loss"] > 0
    model, tok = load_hf_model(tmp_path / "straight", device="cpu")
    assert model.config.n_layer == 1 and tok.bos_token_id == 0


def test_training_ships_the_best_eligible_checkpoint(tmp_path, monkeypatch):
    """Checkpoint selection, on validation data only: the evaluation whose weakest held-out
    ability is strongest among those meeting every floor is shipped (here step 6 of 12)."""
    from course.training import train as tr
    from safetensors.torch import load_file

    passing = {k: (v + 0.01 if op == ">=" else v - 0.01) for k, (op, v) in ev.TARGETS.items()}
    scores = iter([(0.96, True), (0.99, True), (0.995, False), (0.97, True)])   # steps 3, 6, 9, 12
    splits = []

    def fake_evaluate(model, tokenizer, quick=False, split="test"):
        splits.append(split)
        score, eligible = next(scores)
        figures = {**passing, **dict.fromkeys(
            ("ioi_accuracy", "ioi_accuracy_unseen_names", "fact_accuracy", "addition_accuracy"), score)}
        if not eligible:
            figures["ioi_accuracy"] = 0.0
        return ev.Report(figures=figures)

    monkeypatch.setattr(tr, "evaluate", fake_evaluate)
    cfg = tr.TrainConfig(steps=12, batch=2, warmup=4, n_layer=1, d_model=32, n_head=2, ema_decays="")   # raw weights ship
    tr.train(cfg, tmp_path / "run", eval_every=3, ckpt_every=0)
    assert json.loads((tmp_path / "run" / "training_config.json").read_text())["selected_step"] == 6
    assert set(splits) == {"validation"}                      # the test data decides nothing
    assert not (tmp_path / "run" / "best.pt").exists()
    tr.train(cfg, tmp_path / "to6", eval_every=0, ckpt_every=0, stop_after=6)
    at6 = torch.load(tmp_path / "to6" / "checkpoint.pt")["model"]
    shipped = load_file(tmp_path / "run" / "model.safetensors")
    assert all(torch.equal(shipped[k], at6[k]) for k in shipped)


def test_tokenizer_seed_defaults_to_the_model_seed_and_can_be_fixed(tmp_path, monkeypatch):
    """A seed study keeps the vocabulary (and the names kept out of IOI) with --tokenizer-seed."""
    from dataclasses import replace

    from course.training import train as tr

    seeds, real = [], tr.train_tokenizer
    monkeypatch.setattr(tr, "train_tokenizer", lambda seed: seeds.append(seed) or real(n_docs=5000, seed=seed))
    cfg = tr.TrainConfig(seed=3, steps=2, batch=2, warmup=1, n_layer=1, d_model=32, n_head=2, tokenizer_seed=-1)
    tr.train(cfg, tmp_path / "own", eval_every=0, ckpt_every=0)
    tr.train(replace(cfg, tokenizer_seed=1), tmp_path / "fixed", eval_every=0, ckpt_every=0)
    assert seeds == [3, 1]
    recorded = json.loads((tmp_path / "fixed" / "training_config.json").read_text())
    assert (recorded["seed"], recorded["tokenizer_seed"]) == (3, 1)


def test_weight_averages_leave_training_unchanged_and_can_be_shipped(tmp_path, monkeypatch):
    """--ema-decays: shadow averages never feed back into training (the raw weights are those of a
    run without them, resumed or not); with averages only an average ships, and it equals the
    exponential moving average of the raw weights after every step, computed here by hand; the
    raw weights chosen by the same rule are kept beside it (OUT/raw) for a paired comparison."""
    from dataclasses import replace

    from course.training import train as tr
    from safetensors.torch import load_file

    real_tok, real_update = tr.train_tokenizer, tr.update_averages
    monkeypatch.setattr(tr, "train_tokenizer", lambda seed: real_tok(n_docs=5000, seed=seed))
    raw_steps = []
    monkeypatch.setattr(tr, "update_averages", lambda shadows, model: (
        raw_steps.append({k: v.clone() for k, v in model.state_dict().items()}), real_update(shadows, model)))
    cfg = tr.TrainConfig(steps=8, batch=2, warmup=2, n_layer=1, d_model=32, n_head=2, ema_decays="")
    averaged = replace(cfg, ema_decays="0.5, 0.9")
    tr.train(cfg, tmp_path / "plain", eval_every=0, ckpt_every=0)
    tr.train(averaged, tmp_path / "raw_shipped", eval_every=0, ckpt_every=0)     # nothing evaluated: raw ships
    plain, raw = (load_file(tmp_path / d / "model.safetensors") for d in ("plain", "raw_shipped"))
    assert all(torch.equal(plain[k], raw[k]) for k in plain)

    passing = {k: (v + 0.01 if op == ">=" else v - 0.01) for k, (op, v) in ev.TARGETS.items()}
    monkeypatch.setattr(tr, "evaluate", lambda *a, **k: ev.Report(figures=dict(passing)))
    assert tr.train(averaged, tmp_path / "avg", eval_every=4, ckpt_every=0, stop_after=3) is None
    raw_steps.clear()
    first = torch.load(tmp_path / "avg" / "checkpoint.pt")
    assert set(first["ema"]) == {"0.5", "0.9"}
    tr.train(averaged, tmp_path / "avg", resume=True, eval_every=4, ckpt_every=0)
    recorded = json.loads((tmp_path / "avg" / "training_config.json").read_text())
    assert (recorded["selected_step"], recorded["selected_weights"]) == (8, "ema0.5")   # ties: the first average
    expected = {k: v.clone() for k, v in first["ema"]["0.5"].items()}
    for state in raw_steps:                                      # steps 4..8, after the resume
        for k in expected:
            if expected[k].is_floating_point():
                expected[k] = 0.5 * expected[k] + 0.5 * state[k]
    shipped = load_file(tmp_path / "avg" / "model.safetensors")
    assert len(raw_steps) == 5
    assert all(torch.allclose(shipped[k], expected[k], atol=1e-6) for k in shipped)
    assert not any(torch.equal(shipped[k], raw_steps[-1][k]) for k in shipped if "weight" in k and "ln" not in k)
    beside = load_file(tmp_path / "avg" / "raw" / "model.safetensors")     # the raw weights, chosen by the same rule
    assert recorded["raw_selected_step"] == 8 and all(torch.equal(plain[k], beside[k]) for k in plain)
    assert not (tmp_path / "avg" / "best.pt").exists() and not (tmp_path / "avg" / "best_raw.pt").exists()

    for bad in ("1.5", "0", "fast"):
        with pytest.raises(ValueError, match="(?i)ema"):
            tr.ema_decay_list(replace(cfg, ema_decays=bad))


def test_modular_training_smoke(tmp_path):
    from course.models.modular import ModularConfig
    from course.training.modular import train

    from course.models.modular import load_checkpoints, loss_curve

    out = train(ModularConfig(steps=3, d_model=16, d_mlp=32, n_head=2, loss_every=2, checkpoints="0,2"), tmp_path)
    assert set(out) >= {"train_accuracy", "test_accuracy", "steps_run"}
    assert (tmp_path / "model.safetensors").exists()
    assert list(load_checkpoints(tmp_path)) == [0, 2] and [r["step"] for r in loss_curve(tmp_path)] == [0, 2]


# -- the shipped models meet their floors ---------------------------------------------------------

@pytest.fixture(scope="module")
def report(shipped):
    model, tok = shipped
    return ev.evaluate(model, tok)


# Floors the shipped model misses, recorded in its model card (MODEL_CARD.md, "Limits"): three
# of the GPT-2 circuit classes (its IOI is done by subject-suppression heads instead). Strict:
# once a model meets one, its marker must go.
NOT_YET_MET: set[str] = set()
# Issue 38's IOI floors the shipped model misses (the card prints them, "IOI floors of version 3"):
# it ranks IO above S but rarely predicts it on the test families.
IOI_FLOORS_NOT_YET_MET: set[str] = {"ioi_io_top_token", "ioi_io_top_name"}
CIRCUIT_NOT_YET_MET: set[str] = {"name_mover_share", "s_inhibition_removed", "duplicate_removed"}


def _marked(names, missing):
    return [pytest.param(f, marks=pytest.mark.xfail(strict=True, reason="recorded in MODEL_CARD.md"))
            if f in missing else f for f in names]


@pytest.mark.parametrize("figure", _marked(ev.TARGETS, NOT_YET_MET))
def test_shipped_model_meets_its_floor(report, figure):
    op, floor = ev.TARGETS[figure]
    assert report.meets(figure), f"{figure} = {report.figures[figure]:.3f}, target {op} {floor}"


@pytest.mark.parametrize("figure", _marked(ev.IOI_FLOORS, IOI_FLOORS_NOT_YET_MET))
def test_shipped_model_meets_the_ioi_floors_of_version_3(report, figure):
    op, floor = ev.IOI_FLOORS[figure]
    assert report.meets(figure, ev.IOI_FLOORS), f"{figure} = {report.figures[figure]:.3f}, floor {op} {floor}"


def test_io_top_token_counts_the_prompts_whose_top_token_is_io(tokenizer):
    prompts = ev.held_out_ioi_prompts(tokenizer, 3, 0)
    logits = torch.zeros(3, tokenizer.vocab_size)
    logits[0, ev._first_token(tokenizer, prompts[0].answer)] = 5.0                # IO on top
    logits[1, ev._first_token(tokenizer, " the")] = 5.0                          # something else
    logits[2, ev._first_token(tokenizer, prompts[2].answer)] = 1.0
    logits[2, ev._first_token(tokenizer, " " + prompts[2].s)] = 2.0               # S above IO
    assert ev.io_top_token_share(tokenizer, prompts, logits) == pytest.approx(1 / 3)


@pytest.mark.parametrize("figure", _marked(sorted(CIRCUIT_TARGETS), CIRCUIT_NOT_YET_MET))
def test_shipped_model_has_the_ioi_circuit_classes(report, figure):
    op, floor = CIRCUIT_TARGETS[figure]
    assert report.circuit.meets(figure), f"{figure} = {report.circuit.figures[figure]:.3f}, target {op} {floor}"


def test_model_card_records_the_measured_figures(report):
    card = (BUNDLED["course-gpt2"] / "MODEL_CARD.md").read_text()
    saved = json.loads((BUNDLED["course-gpt2"] / "evaluation.json").read_text())
    for name, value in report.figures.items():
        assert saved["figures"][name] == pytest.approx(value, abs=1e-6), f"{name}: regenerate the card"
        assert f"{value:.3f}" in card
    assert report.heads["prev_token_head"] in card and report.heads["induction_head"] in card
    for name, value in report.circuit.figures.items():
        assert saved["circuit"]["figures"][name] == pytest.approx(value, abs=1e-6, nan_ok=True), \
                f"{name}: regenerate the card"
        assert f"{value:.3f}" in card
    for l, h in report.circuit.heads:
        assert f"L{l}H{h}" in card


def test_model_card_records_the_final_families_measured_once_for_the_shipped_model(shipped):
    model, tokenizer = shipped
    final = ev.final_family_figures(model, tokenizer)
    saved = json.loads((BUNDLED["course-gpt2"] / "evaluation.json").read_text())["final_families"]
    card = (BUNDLED["course-gpt2"] / "MODEL_CARD.md").read_text()
    for name, value in final.items():
        assert saved[name] == pytest.approx(value, abs=1e-6), f"{name}: regenerate the card"
        assert f"{value:.3f}" in card or f"{value:.2f}" in card
    assert "Final families" in card and "passive" in card


def test_model_card_records_ioi_by_name_group(shipped):
    model, tokenizer = shipped
    groups = ev.ioi_by_name_group(model, tokenizer, "test")
    saved = json.loads((BUNDLED["course-gpt2"] / "evaluation.json").read_text())["name_groups"]
    card = (BUNDLED["course-gpt2"] / "MODEL_CARD.md").read_text()
    for group, (acc, diff) in groups.items():
        assert saved[group]["ioi_accuracy"] == pytest.approx(acc, abs=1e-6), f"{group}: regenerate the card"
        assert f"{group} {acc:.3f} ({diff:.2f})" in card


def test_card_limits_name_the_final_floors_missed_and_the_weakest_name_group():
    from course.training.card import _final_limits, _name_group_limit

    final = {"ioi_accuracy": 0.95, "ioi_logit_diff": 5.0, "ioi_accuracy_unseen_names": 0.85,
             "ioi_logit_diff_unseen_names": 1.0}
    (line,) = _final_limits(final)
    assert "names never in IOI is 0.850" in line and "0.9" in line
    assert _final_limits({**final, "ioi_accuracy_unseen_names": 0.9}) == []
    uneven = {"both kept out": (0.92, 1.3), "IO kept out": (0.90, 3.1), "S kept out": (0.57, 0.3), "neither": (0.95, 2.7)}
    assert "With S kept out, accuracy is 0.38 below" in _name_group_limit(uneven)
    even = {g: (0.93, 2.0) for g in NAME_GROUPS}
    assert "barely matters" in _name_group_limit(even)


def test_shipped_weights_are_light():
    for name, path in BUNDLED.items():
        assert (path / "model.safetensors").stat().st_size < 20 * 2**20, name


def test_modular_addition_model_has_grokked():
    from course.models.modular import accuracy

    model, tok = load_hf_model("modular-addition", device="cpu")
    assert tok is None and model.config.n_layer == 1
    acc = accuracy(model)
    assert acc["train_accuracy"] >= 0.99 and acc["test_accuracy"] >= 0.99


def test_evaluate_cli_prints_every_figure(capsys):
    assert ev.main(["--json"]) == (1 if NOT_YET_MET | CIRCUIT_NOT_YET_MET else 0)   # exit status: all floors hold?
    out = json.loads(capsys.readouterr().out)
    assert set(ev.TARGETS) <= set(out["figures"])


def test_readme_quotes_the_shipped_models_figures():
    """Every three-decimal figure the README's course-gpt2 entry quotes is one the evaluation
    measured (a retrained model must not leave old numbers in the README)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    entry = readme.split("- `course-gpt2` (default)", 1)[1].split("\n- `", 1)[0]
    measured = json.loads((BUNDLED["course-gpt2"] / "evaluation.json").read_text())
    values = [*measured["figures"].values(), *measured["circuit"]["figures"].values(),
              *measured["final_families"].values()]
    quoted = re.findall(r"(?<!--ema-decays )\b0\.\d{3}\b", entry)     # a training flag is no figure
    assert quoted, "the README's course-gpt2 entry quotes no measured figure"
    for q in quoted:
        assert any(abs(round(v, 3) - float(q)) < 1e-9 for v in values if v == v), f"README quotes {q}, not measured"
    for q in re.findall(r"logit difference (\d+\.\d)\b", entry):
        assert abs(round(measured["figures"]["ioi_logit_diff"], 1) - float(q)) < 1e-9, q


def test_ioi_by_name_group_draws_io_and_s_from_the_right_names(tokenizer, monkeypatch):
    split = ioi_split(single_token_names(tokenizer))
    seen = {}
    monkeypatch.setattr(ev, "ioi_measures", lambda model, tok, prompts: seen.setdefault(len(seen), prompts) and (1.0, 2.0))
    out = ev.ioi_by_name_group(None, tokenizer, "validation", n=40)
    assert list(out) == list(NAME_GROUPS) and all(v == (1.0, 2.0) for v in out.values())
    kept_out = set(split.unseen_names)
    for (io_kept, s_kept), prompts in zip([(True, True), (True, False), (False, True), (False, False)], seen.values()):
        assert len(prompts) == 40
        assert all((p.io in kept_out) == io_kept and (p.s in kept_out) == s_kept and p.io != p.s for p in prompts)
        assert all(p.template.families[0] in ioi.families("intro", "validation") for p in prompts)


def test_io_top_name_share_counts_only_prompts_whose_best_name_is_io(tokenizer, monkeypatch):
    """Prompt 0: IO has the highest name logit. Prompt 1: IO beats S but a third name, not in
    the sentence, beats IO. Prompt 2: a non-name token beats every name, IO is the best name."""
    names = single_token_names(tokenizer)
    io, s, other = names[:3]
    prompts = [ioi.IOIPrompt(f"{io} met {s}. {s} waved at", io, s) for _ in range(3)]
    logits = torch.zeros(3, tokenizer.vocab_size)
    tid = {n: ev._first_token(tokenizer, " " + n) for n in (io, s, other)}
    logits[0, tid[io]], logits[0, tid[s]] = 3.0, 1.0
    logits[1, tid[io]], logits[1, tid[s]], logits[1, tid[other]] = 2.0, 1.0, 5.0
    logits[2, tid[io]], logits[2, ev._first_token(tokenizer, " the")] = 1.0, 9.0
    monkeypatch.setattr(ev, "_last_logits", lambda model, tok, texts: logits[:len(texts)])
    assert ev.io_top_name_share(None, tokenizer, prompts) == pytest.approx(2 / 3)
    assert ev.ioi_measures(None, tokenizer, prompts)[0] == 1.0     # accuracy cannot tell prompt 1 apart


def test_ship_refuses_an_unfinished_run_and_says_how_to_finish_it(tmp_path, capsys):
    from course.training import ship

    (tmp_path / "checkpoint.pt").write_bytes(b"")
    assert ship.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors" in err and "--resume" in err


def test_ship_copies_the_model_files_then_runs_each_rebuild_step(tmp_path, monkeypatch):
    from course.training import ship

    run, assets = tmp_path / "run", tmp_path / "assets"
    run.mkdir()
    for f in ship.MODEL_FILES:
        (run / f).write_text(f)
    calls = []
    monkeypatch.setattr(ship.subprocess, "run", lambda cmd, **kw: calls.append((cmd, kw["env"]["OMP_NUM_THREADS"])))
    steps = ship.ship(run, assets, python="py")
    assert sorted(p.name for p in assets.iterdir()) == sorted(ship.MODEL_FILES)
    assert all((assets / f).read_text() == f for f in ship.MODEL_FILES)
    assert [c[0][:3] for c in calls] == [["py", "-m", "course.training.card"], ["py", "-m", "course.training.sae"],
                                          ["py", "-m", "course.training.transcoders"], ["py", "-m", "course.build"]]
    assert calls[0][0][3] == str(assets) and {c[1] for c in calls} == {"1"} and len(steps) == 5
    (assets / "reproduction.json").write_text("{}")          # made for the weights just replaced
    ship.ship(run, assets, python="py")
    assert not (assets / "reproduction.json").exists()
    (run / "reproduction.json").write_text("run's")
    ship.ship(run, assets, python="py")
    assert (assets / "reproduction.json").read_text() == "run's"
    dry = ship.ship(run, tmp_path / "untouched", dry_run=True, python="py")
    assert [s.replace(str(tmp_path / "untouched"), str(assets)) for s in dry] == steps
    assert not (tmp_path / "untouched").exists() and len(calls) == 12     # a dry run runs nothing


# -- reproduction ---------------------------------------------------------------------------------

def test_reproduce_retrains_a_run_bit_for_bit_and_the_card_quotes_it(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from course.training import reproduce
    from course.training.card import _reproduction_text

    run = tmp_path / "run"
    train_mod.train(train_mod.TrainConfig(steps=6, batch=2, warmup=2, n_layer=1, d_model=32, n_head=2, seed=3),
                    run, eval_every=0, ckpt_every=0)
    assert "not yet checked" in _reproduction_text(run)
    assert reproduce.main([str(run), "--work", str(tmp_path / "rerun"), "--record"]) == 0
    out = capsys.readouterr().out
    assert "model.safetensors: identical" in out and "reproduced bit for bit" in out
    record = reproduce.current_record(run)
    assert record["identical"] and record["config"]["seed"] == 3 and record["eval_every"] == 0
    assert record["sha256"]["model.safetensors"]["model"] == reproduce.sha256(run / "model.safetensors")
    assert "got the same bytes" in _reproduction_text(run)
    # weights that are not what the command gives: the record no longer speaks for them, and a rerun says so
    weights = load_file(run / "model.safetensors")
    weights["transformer.wte.weight"][5, 0] += 1e-3
    save_file(weights, run / "model.safetensors", metadata={"format": "pt"})
    assert reproduce.current_record(run) is None and "not yet checked" in _reproduction_text(run)
    assert reproduce.main([str(run), "--work", str(tmp_path / "rerun"), "--record"]) == 1
    out = capsys.readouterr().out
    assert "model.safetensors: DIFFERENT" in out and "tokenizer.json: identical" in out and "NOT reproduced" in out
    assert "**Reproduction failed**" in _reproduction_text(run)


def test_reproduce_refuses_what_it_cannot_check(tmp_path, capsys):
    from course.training import reproduce

    assert reproduce.main([str(tmp_path)]) == 2
    assert "training_config.json is missing" in capsys.readouterr().err
    (tmp_path / "training_config.json").write_text(json.dumps({"seed": 1, "device": "cuda:0"}))
    assert reproduce.main([str(tmp_path)]) == 2
    assert "CPU runs only" in capsys.readouterr().err


# The promise #11 makes of the shipped model: its card's command gives back its weights. The
# record is written by `python -m course.training.reproduce --record` and only counts while its
# digests match the files shipped now, so shipping new weights fails here until they are rerun.
def test_shipped_model_was_reproduced_bit_for_bit():
    from course.training.reproduce import current_record

    record = current_record(BUNDLED["course-gpt2"])
    assert record is not None, "no reproduction record for the shipped weights: python -m course.training.reproduce --record"
    assert record["identical"]
