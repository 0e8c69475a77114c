"""The word lists the synthetic corpus is built from.

Everything here is plain data. Which names are held out of the IOI sentences is
decided in :mod:`course.data.splits`, so the lists themselves stay neutral.
"""

from __future__ import annotations

# First names. After the tokenizer is trained, only names that encode to a single
# token with a leading space are kept (see single_token_names below).
FIRST_NAMES = [
    "Mary", "John", "Anna", "James", "Sarah", "David", "Laura", "Paul", "Emma", "Mark",
    "Alice", "Peter", "Julia", "Tom", "Kate", "Sam", "Lucy", "Jack", "Rose", "Adam",
    "Clara", "Daniel", "Grace", "Henry", "Helen", "Oliver", "Eva", "Leo", "Nina", "Max",
    "Sophie", "Ben", "Maria", "Oscar", "Ruth", "Victor", "Amy", "Hugo", "Iris", "Luke",
    "Jane", "Carl", "Lily", "Ivan", "Zoe", "Felix", "Ella", "Simon", "Mia", "Noah",
    "Chloe", "Ethan", "Hannah", "Ryan", "Olivia", "Alex", "Diana", "Frank", "Irene", "Karl",
    "Linda", "Martin", "Nora", "Owen", "Paula", "Robert", "Sara", "Steve", "Tina", "Walter",
    "Anne", "Bob", "Cathy", "Dan", "Eric", "Fiona", "George", "Holly", "Ian", "Jill",
    "Kevin", "Lisa", "Mike", "Nancy", "Phil", "Rachel", "Susan", "Tony", "Vera", "Will",
    "Amber", "Bruce", "Carol", "Dean", "Ellen", "Fred", "Gina", "Harry", "Ida", "Joel",
]

PLACES = [
    "store", "park", "school", "office", "market", "station", "library", "garden",
    "beach", "museum", "house", "restaurant", "hospital", "farm", "lake", "river",
    "castle", "bakery", "theater", "harbor", "forest", "hotel", "church", "cafe",
]

OBJECTS = [
    "drink", "book", "ball", "letter", "bag", "ring", "key", "flower", "cake", "hat",
    "phone", "card", "map", "apple", "pen", "box", "cup", "coin", "lamp", "shirt",
    "basket", "ticket", "clock", "candle", "bottle", "camera", "chair", "gift",
]

ADJECTIVES = [
    "busy", "quiet", "cold", "warm", "large", "small", "crowded", "empty", "bright",
    "dark", "old", "new", "clean", "noisy", "calm", "sunny", "rainy", "long",
]

VERBS_PAST = [
    "saw", "met", "called", "helped", "visited", "thanked", "followed", "watched",
]

LANGUAGES = [
    "Velish", "Tarnic", "Oruvan", "Melsk", "Dravic", "Quenish", "Saltic", "Borish",
    "Lumic", "Ferran", "Kestic", "Yarish", "Noric", "Pellan", "Zurish", "Gandic",
]

SPORTS = [
    "chess", "tennis", "soccer", "golf", "rugby", "hockey", "cricket", "polo",
    "boxing", "rowing", "skiing", "archery", "fencing", "sailing", "cycling", "karate",
]

# Syllables that make up the invented country and city names.
ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kr", "st", "tr"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "or", "an", "el", "is"]


def single_token_names(tokenizer) -> tuple[str, ...]:
    """The first names that encode to exactly one token with their leading space."""
    return tuple(n for n in FIRST_NAMES
                 if len(tokenizer(" " + n, add_special_tokens=False)["input_ids"]) == 1)
