"""IOI sentences written by hand, outside the grammar of :mod:`course.data.ioi`.

None of these shapes can be produced by the corpus generator: other verbs, other
clause orders, other connectives. They are the closest this project gets to "a
new user types an IOI sentence"; the evaluation reports them next to the held-out
families. ``{IO}`` is the answer, ``{S}`` the repeated name.
"""

from __future__ import annotations

HANDWRITTEN = [
    "{IO} phoned {S} on Sunday. That evening {S} baked a cake for",
    "After {IO} and {S} sat down at the cafe, {S} passed the salt to",
    "{S} and {IO} argued about the map for an hour. In the end {S} apologised to",
    "It was {IO} who opened the door for {S}. Without a word, {S} handed the keys to",
    "The letter from {IO} reached {S} on Friday, and {S} wrote back to",
    "{S} had not seen {IO} in years. At the station {S} ran towards",
    "On the train, {IO} sat opposite {S}. Halfway there {S} offered a sandwich to",
    "{IO} lent {S} a bike last summer. Today {S} returned the bike to",
    "During the game {S} kept passing the ball to {IO}, and at the end {S} shook hands with",
    "{S} was new in town and {IO} showed the way. Grateful, {S} sent flowers to",
    "At the party {IO} told a joke. {S} laughed so hard that {S} spilled juice on",
    "{IO} and {S} were painting the fence. When the paint ran out, {S} gave the brush to",
    "The teacher asked {S} and {IO} to stay. After class {S} lent a pencil to",
    "{S} met {IO} at the market, and later that week {S} sent a postcard to",
    "Because {IO} was ill, {S} did the shopping. In the evening {S} brought soup to",
    "{IO} was waiting at the bus stop when {S} came by. {S} gave an umbrella to",
    "Every morning {S} walks past {IO}'s house. Yesterday {S} finally spoke to",
    "{IO} found a wallet and {S} found a phone. {S} showed the phone to",
    "When the storm hit, {S} and {IO} hid in the barn. At dawn {S} whispered to",
    "{S} won the race and {IO} came second. On the podium {S} bowed to",
    "In the library {IO} dropped a pile of books near {S}, so {S} picked them up for",
    "{IO} taught {S} how to swim. Years later {S} dedicated a song to",
    "A parcel for {IO} arrived at {S}'s door, so {S} carried it over to",
    "{S} and {IO} both wanted the last ticket. In the end {S} gave it to",
]
