"""Write attnlab's own Q&A, dialogue and chat corpora (TinyTalks Q:/A: format) from fixed templates.

Deterministic: one random.Random(SEED), stdlib only; running it twice gives identical bytes.
`python corpora/generate.py` rewrites corpora/qa, corpora/dialogue and corpora/chat; `--check` only compares.
"""
from __future__ import annotations

import argparse
import functools
import json
import random
import re
import sys
import tempfile
from pathlib import Path

SEED = 20240601
BOT = "Pip"
SPLITS = ("train", "val", "test")
LEVELS = ("greetings", "facts", "arithmetic", "usage", "assistant")
ALLOWED_CHARS = set(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,?!'-:\n"
)
MAX_ANSWER = 60
MAX_DIALOGUE_CHARS = 280
N_DIALOGUES = {"train": 480, "val": 60, "test": 60}
NUM_WORDS = "zero one two three four five six seven eight nine ten".split()

# ---- Q&A tables: each cluster is (questions, one canonical answer) ----

GREETINGS = [
    (["Hello", "Hi", "Hey", "Hello there", "Hi there", "Hey there", "Hiya"], True,
     "Hello! How can I help you?"),
    (["Good morning", "Morning"], True, "Good morning to you!"),
    (["Good afternoon"], True, "Good afternoon to you!"),
    (["Good evening"], True, "Good evening to you!"),
    (["Good night", "Night night"], True, "Good night, sleep well!"),
    (["Bye", "Goodbye", "See you later", "See you soon", "Bye bye", "Farewell",
      "Talk to you later"], False, "Goodbye! Have a nice day."),
    (["Thank you", "Thanks", "Thanks a lot", "Thank you very much", "Many thanks"], True,
     "You are welcome."),
    (["Nice to meet you", "Pleased to meet you", "Glad to meet you"], True,
     "Nice to meet you too!"),
    (["Good job", "Well done", "Great job"], True, "Thank you, that is kind."),
    (["Sorry", "I am sorry", "Sorry about that"], False, "That is okay, no problem."),
]
GREETING_QUESTIONS = [
    (["How are you?", "How are you today?", "How are you doing?", "How is it going?",
      "How do you do?", "Are you well?", "How are things?"], "I am fine, thank you."),
    (["What is your name?", "What's your name?", "Who are you?", "Tell me your name.",
      "What should I call you?", "Do you have a name?", "What are you called?",
      "Your name, please?"], f"My name is {BOT}."),
    (["Are you there?", "Is anyone there?", "Anybody there?", "Are you still there?"],
     "Yes, I am here."),
    (["Can I ask you something?", "May I ask a question?", "Can I ask a question?"],
     "Yes, please ask."),
]

ASSISTANT = [
    (["Who made you?", "Who built you?", "Who created you?", "Who wrote you?"],
     "I was made by the attnlab team."),
    (["Are you a person?", "Are you human?", "Are you a human?", "Are you a real person?"],
     "No, I am a small language model."),
    (["Are you a robot?", "Are you a machine?", "Are you a computer?"],
     "I am a program that runs on a computer."),
    (["What are you?", "What kind of thing are you?", "What sort of program are you?"],
     "I am a small language model."),
    (["What can you do?", "What are you good at?", "How can you help me?", "What do you do?"],
     "I can answer simple questions."),
    (["How do you work?", "How do you think?", "How do you make answers?"],
     "I guess the next letter, one at a time."),
    (["How did you learn?", "How were you trained?", "Where did you learn to talk?"],
     "I learned from many small example chats."),
    (["How old are you?", "What is your age?", "When were you born?"],
     "I am very new, only a few days old."),
    (["Where do you live?", "Where are you?", "Where do you run?"], "I live inside a computer."),
    (["Do you have feelings?", "Can you feel things?", "Are you ever sad?"],
     "No, I do not have feelings."),
    (["Do you eat?", "Do you eat food?", "Are you hungry?"], "No, I do not need to eat."),
    (["Do you sleep?", "Are you tired?", "Do you need rest?"], "No, I do not need to sleep."),
    (["Can you see me?", "Do you have eyes?", "Can you see?"], "No, I can only read text."),
    (["What language do you speak?", "Do you speak English?", "Which language do you use?"],
     "I speak simple English."),
    (["Are you smart?", "Are you clever?", "Are you very smart?"],
     "I am small, so I know only a little."),
    (["Do you know everything?", "Do you know all things?", "Are you always right?"],
     "No, I can make mistakes."),
    (["Can you make mistakes?", "Do you make mistakes?", "Are you ever wrong?"],
     "Yes, sometimes I am wrong."),
    (["What is your job?", "What is your purpose?", "Why do you exist?"],
     "My job is to answer your questions."),
    (["Are you alive?", "Are you living?", "Do you breathe?"], "No, I am not alive."),
    (["Are you my friend?", "Can we be friends?", "Will you be my friend?"],
     "Yes, I am happy to be your friend."),
    (["Do you like people?", "Do you like humans?", "Do you like talking to people?"],
     "Yes, I like to chat with people."),
    (["What is your favourite colour?", "What is your favorite color?",
      "What colour do you like?"], "I like blue."),
    (["Can you use the internet?", "Are you online?", "Can you search the web?"],
     "No, I cannot use the internet."),
    (["Do you remember me?", "Can you remember things?", "Do you have a memory?"],
     "I remember only this short chat."),
    (["How big are you?", "How large are you?", "Are you a big model?"],
     "I am a tiny model with few weights."),
    (["Do you have a family?", "Do you have parents?", "Do you have brothers?"],
     "No, I do not have a family."),
    (["Do you have a body?", "Do you have hands?", "Can you walk?"],
     "No, I do not have a body."),
    (["Can you do math?", "Can you add numbers?", "Can you count?"],
     "Yes, I can add and subtract small numbers."),
    (["Can you tell jokes?", "Are you funny?", "Do you know any jokes?"],
     "I am not very good at jokes."),
    (["Can you sing?", "Do you sing?", "Can you sing a song?"], "No, I cannot sing."),
    (["Do you dream?", "Do you have dreams?", "Do you ever dream?"], "No, I do not dream."),
    ([f"Why are you called {BOT}?", f"What does {BOT} mean?", f"Why is your name {BOT}?"],
     f"{BOT} is a short and friendly name."),
]

COLOURS = [
    ("grass", "green"), ("the sky", "blue"), ("snow", "white"), ("a banana", "yellow"),
    ("coal", "black"), ("a tomato", "red"), ("a carrot", "orange"), ("milk", "white"),
    ("a lemon", "yellow"), ("a frog", "green"), ("a crow", "black"), ("the sun", "yellow"),
    ("a strawberry", "red"), ("a leaf", "green"), ("chocolate", "brown"), ("a cherry", "red"),
    ("salt", "white"), ("a pumpkin", "orange"), ("an elephant", "grey"), ("a mouse", "grey"),
    ("soil", "brown"), ("a lime", "green"), ("a flamingo", "pink"), ("a polar bear", "white"),
    ("a pig", "pink"), ("an eggplant", "purple"), ("a plum", "purple"), ("the sea", "blue"),
    ("a raven", "black"), ("a cucumber", "green"), ("a fire truck", "red"),
    ("a school bus", "yellow"), ("a zebra", "black and white"), ("a panda", "black and white"),
]
SOUNDS = [
    ("dog", "woof"), ("cat", "meow"), ("cow", "moo"), ("duck", "quack"), ("sheep", "baa"),
    ("pig", "oink"), ("horse", "neigh"), ("owl", "hoot"), ("lion", "roar"), ("frog", "ribbit"),
    ("bee", "buzz"), ("snake", "hiss"), ("mouse", "squeak"), ("rooster", "cock-a-doodle-doo"),
    ("chicken", "cluck"), ("goat", "maa"), ("donkey", "hee-haw"), ("crow", "caw"),
    ("wolf", "awoo"), ("turkey", "gobble"), ("pigeon", "coo"),
]
LEGS = [
    ("dog", "four"), ("cat", "four"), ("bird", "two"), ("spider", "eight"), ("ant", "six"),
    ("bee", "six"), ("horse", "four"), ("duck", "two"), ("chicken", "two"), ("cow", "four"),
    ("person", "two"), ("beetle", "six"), ("crab", "ten"), ("frog", "four"),
    ("lizard", "four"), ("kangaroo", "two"), ("snake", "no"), ("fish", "no"),
]
SIDES = [("triangle", "three"), ("square", "four"), ("pentagon", "five"),
         ("hexagon", "six"), ("octagon", "eight")]
COUNTS = [
    (["How many days are in a week?", "How many days does a week have?"],
     "A week has seven days."),
    (["How many months are in a year?", "How many months does a year have?"],
     "A year has twelve months."),
    (["How many hours are in a day?", "How many hours does a day have?"],
     "A day has 24 hours."),
    (["How many minutes are in an hour?", "How many minutes does an hour have?"],
     "An hour has 60 minutes."),
    (["How many seconds are in a minute?", "How many seconds does a minute have?"],
     "A minute has 60 seconds."),
    (["How many days are in a year?", "How many days does a year have?"],
     "A year has 365 days."),
    (["How many letters are in the alphabet?", "How many letters does the alphabet have?"],
     "The alphabet has 26 letters."),
    (["How many seasons are there?", "How many seasons does a year have?"],
     "A year has four seasons."),
]
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = ("January February March April May June July August September October "
          "November December").split()
SEASONS = "spring summer autumn winter".split()
OPPOSITES = [
    ("hot", "cold"), ("big", "small"), ("up", "down"), ("fast", "slow"), ("happy", "sad"),
    ("day", "night"), ("wet", "dry"), ("old", "young"), ("open", "closed"), ("full", "empty"),
    ("hard", "soft"), ("tall", "short"), ("in", "out"), ("left", "right"), ("yes", "no"),
    ("good", "bad"), ("rich", "poor"), ("clean", "dirty"), ("early", "late"),
    ("loud", "quiet"), ("thick", "thin"), ("heavy", "light"), ("strong", "weak"),
    ("push", "pull"), ("win", "lose"), ("begin", "end"), ("first", "last"), ("near", "far"),
    ("high", "low"), ("top", "bottom"), ("front", "back"), ("boy", "girl"),
    ("black", "white"), ("on", "off"), ("buy", "sell"), ("give", "take"), ("laugh", "cry"),
    ("sweet", "sour"), ("asleep", "awake"), ("inside", "outside"), ("above", "below"),
    ("true", "false"), ("always", "never"), ("wide", "narrow"), ("safe", "dangerous"),
]

# (noun phrase, kind, purpose); kind: "a" singular count, "pl" plural, "mass" no article
USAGE = [
    ("a spoon", "a", "eat soup"), ("a fork", "a", "eat food"), ("a knife", "a", "cut food"),
    ("a cup", "a", "hold a drink"), ("a pen", "a", "write"), ("a pencil", "a", "draw"),
    ("a broom", "a", "sweep the floor"), ("a key", "a", "open a lock"),
    ("a ladder", "a", "reach high places"), ("an umbrella", "a", "stay dry in the rain"),
    ("a towel", "a", "dry yourself"), ("a comb", "a", "tidy your hair"),
    ("a toothbrush", "a", "clean your teeth"), ("a pillow", "a", "rest your head"),
    ("a bed", "a", "sleep"), ("a chair", "a", "sit down"), ("a clock", "a", "tell the time"),
    ("a map", "a", "find your way"), ("a phone", "a", "call people"),
    ("a hammer", "a", "hit nails"), ("a saw", "a", "cut wood"), ("a shovel", "a", "dig holes"),
    ("a bucket", "a", "carry water"), ("a fridge", "a", "keep food cold"),
    ("an oven", "a", "bake bread"), ("a kettle", "a", "boil water"),
    ("a lamp", "a", "light a room"), ("a camera", "a", "take photos"),
    ("a bike", "a", "ride places"), ("a boat", "a", "cross water"), ("a net", "a", "catch fish"),
    ("soap", "mass", "wash your hands"), ("glue", "mass", "stick things together"),
    ("scissors", "pl", "cut paper"), ("a needle", "a", "sew cloth"),
    ("a ruler", "a", "measure length"), ("an eraser", "a", "rub out mistakes"),
    ("a wallet", "a", "hold money"), ("a bag", "a", "carry things"),
    ("a backpack", "a", "carry books"), ("a stove", "a", "cook food"),
    ("a mop", "a", "clean the floor"), ("a sponge", "a", "wash dishes"),
    ("a rake", "a", "gather leaves"), ("a paintbrush", "a", "paint pictures"),
    ("a kite", "a", "play in the wind"), ("a ball", "a", "play games"),
    ("a book", "a", "read stories"), ("a calendar", "a", "see the date"),
    ("a thermometer", "a", "measure heat"), ("a mirror", "a", "see yourself"),
    ("a whistle", "a", "make a loud sound"), ("a lock", "a", "keep things safe"),
    ("a fan", "a", "keep cool"), ("a blanket", "a", "keep warm"), ("a coat", "a", "stay warm"),
    ("gloves", "pl", "keep your hands warm"), ("boots", "pl", "keep your feet dry"),
    ("sunglasses", "pl", "protect your eyes"), ("a tent", "a", "sleep outdoors"),
    ("a flashlight", "a", "see in the dark"), ("a plate", "a", "hold food"),
    ("a bowl", "a", "hold soup"), ("a jar", "a", "store food"),
    ("an envelope", "a", "hold a letter"), ("a keyboard", "a", "type words"),
    ("a bin", "a", "throw away rubbish"), ("a hose", "a", "water plants"),
    ("a vase", "a", "hold flowers"), ("a wheelbarrow", "a", "move soil"),
]

# ---- dialogue tables ----

# slot -> (train pool, val pool, test pool); the three pools never share a value
POOLS = {
    "name": (
        "Mara Tomas Ines Omar Lena Kofi Yuki Ravi Nadia Pablo Sven Amara Hugo Leila Mateo "
        "Zara Ivan Noor Felix Aiko Bruno Chloe Diego Elif Farid Greta Hamza Ingrid Jonas "
        "Kira Liam Mina Nico Olga Priya Quinn Rosa Sami Tara Umar Vera Wren Yara Zane Anya "
        "Boris Cleo Dario Esme Finn Gita".split(),
        "Hana Ilya Kai Lola Milo Nia Oscar Pia Rafi Selma Theo Vito Willa Yusuf Zoe".split(),
        "Arlo Bea Cyrus Dina Emil Gus Hedda Idris Juno Kaito Luz Nell Otto Remy Suki".split(),
    ),
    "drink": (
        "tea coffee milk juice cocoa lemonade soda chai cider espresso latte mocha".split(),
        "horchata kombucha lassi".split(),
        "ayran matcha kefir".split(),
    ),
    "pet": (
        "dog cat rabbit hamster parrot goldfish turtle snake lizard mouse pony ferret canary "
        "duck".split(),
        "chinchilla iguana axolotl".split(),
        "gerbil cockatoo tarantula".split(),
    ),
    "city": (
        "Paris London Tokyo Cairo Lima Oslo Rome Berlin Madrid Lisbon Dublin Vienna Prague "
        "Warsaw Athens Delhi Mumbai Seoul Beijing Sydney Toronto Boston Chicago Denver Dallas "
        "Miami Austin Nairobi Lagos Accra Dakar Tunis Rabat Quito Bogota Santiago".split(),
        "Havana Manila Jakarta Hanoi Bangkok Dhaka Karachi Tehran Baku Riga".split(),
        "Tallinn Vilnius Helsinki Bergen Zurich Geneva Milan Naples Porto Seville".split(),
    ),
    "colour": (
        "red blue green yellow purple orange pink black white grey brown gold silver".split(),
        "teal violet cyan".split(),
        "maroon indigo magenta".split(),
    ),
    "food": (
        "pizza pasta rice soup bread cheese salad noodles curry tacos sushi pancakes".split(),
        "dumplings paella falafel".split(),
        "lasagna ramen burritos".split(),
    ),
    "sport": (
        "tennis football hockey rugby cricket baseball basketball volleyball golf judo karate "
        "badminton".split(),
        "curling lacrosse handball".split(),
        "polo netball softball".split(),
    ),
    "job": (
        "teacher nurse doctor baker farmer pilot driver chef painter writer singer dancer "
        "plumber builder tailor engineer artist actor".split(),
        "dentist florist surgeon".split(),
        "librarian architect jeweler".split(),
    ),
}
TOPIC_WORD = {"name": "name", "drink": "drink", "pet": "pet", "city": "city",
              "colour": "colour", "food": "food", "sport": "sport", "job": "job"}


def _an(word: str) -> str:
    """'a' or 'an' before word, by its first letter."""
    return "an" if word[0].lower() in "aeiou" else "a"


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


# slot -> ([(fact question, recall answer)], fact answer, recall questions); {v} value,
# {V} capitalised value, {a}/{A} its article. Each recall answer mirrors the words of the fact it
# recalls ("I have a dog." ... "You have a dog."), as people do. The first four name facts open a
# dialogue (turn 0); the last two are used later in it.
DIALOGUE_TEMPLATES = {
    "name": ([("Hi, I am {v}.", "You are {v}."), ("Hello, my name is {v}.", "Your name is {v}."),
              ("Hi! My name is {v}.", "Your name is {v}."), ("Hey, I am {v}.", "You are {v}."),
              ("My name is {v}.", "Your name is {v}."), ("By the way, I am {v}.", "You are {v}.")],
             "Nice to meet you, {v}.",
             ["What is my name?", "Do you know my name?", "Who am I?", "Can you tell me my name?"]),
    "drink": ([("I like to drink {v}.", "You like to drink {v}."),
               ("My favourite drink is {v}.", "Your favourite drink is {v}."),
               ("I drink {v} every day.", "You drink {v} every day.")],
              "{V} is a nice drink.",
              ["What do I like to drink?", "What is my favourite drink?", "Which drink do I like?"]),
    "pet": ([("I have {a} {v}.", "You have {a} {v}."), ("I have a pet {v}.", "You have a pet {v}."),
             ("My pet is {a} {v}.", "Your pet is {a} {v}.")],
            "{A} {v} is a nice pet.",
            ["What pet do I have?", "What is my pet?", "What animal do I have?"]),
    "city": ([("I live in {v}.", "You live in {v}."), ("My home is in {v}.", "Your home is in {v}."),
              ("I live in the city of {v}.", "You live in the city of {v}.")],
             "{V} sounds like a nice place.",
             ["Where do I live?", "What city do I live in?", "Which city is my home?"]),
    "colour": ([("My favourite colour is {v}.", "Your favourite colour is {v}."),
                ("I like the colour {v}.", "You like the colour {v}."),
                ("The colour I like best is {v}.", "The colour you like best is {v}.")],
               "{V} is a lovely colour.",
               ["What is my favourite colour?", "What colour do I like?"]),
    "food": ([("My favourite food is {v}.", "Your favourite food is {v}."),
              ("I love to eat {v}.", "You love to eat {v}.")], "{V} is tasty.",
             ["What is my favourite food?", "What do I like to eat?"]),
    "sport": ([("I play {v}.", "You play {v}."), ("I like to play {v}.", "You like to play {v}."),
               ("My sport is {v}.", "Your sport is {v}.")],
              "{V} is a fun sport.",
              ["What sport do I play?", "Which sport do I play?"]),
    "job": ([("I work as {a} {v}.", "You work as {a} {v}."), ("I am {a} {v} by trade.", "You are {a} {v} by trade.")],
            "Being {a} {v} sounds great.",
            ["What is my job?", "What do I do for work?"]),
}
# (question, answer, slot it follows or None, place: "any" | "first" | "last")
FILLERS = [
    ("How are you?", "I am fine, thank you.", None, "any"),
    ("Can you help me?", "Yes, I will do my best.", None, "any"),
    ("It is a nice day.", "Yes, it is a lovely day.", None, "any"),
    ("I am happy today.", "I am glad to hear that.", None, "any"),
    ("Are you there?", "Yes, I am here.", None, "any"),
    ("What is 2 plus 2?", "2 plus 2 is 4.", None, "any"),
    ("Do you like music?", "Yes, I like music.", None, "any"),
    ("I am a bit tired.", "Maybe you should rest.", None, "any"),
    ("What is your name?", f"My name is {BOT}.", None, "any"),
    ("Who made you?", "I was made by the attnlab team.", None, "any"),
    ("I had a good day.", "That is great to hear.", None, "any"),
    ("Hello!", "Hello! How can I help you?", None, "first"),
    ("Good morning!", "Good morning to you!", None, "first"),
    ("Thanks, bye!", "Goodbye! Have a nice day.", None, "last"),
    ("Thank you.", "You are welcome.", None, "last"),
    ("Do you like my name?", "Yes, it is a nice name.", "name", "any"),
    ("Is that a common name?", "I think it is a lovely name.", "name", "any"),
    ("Do you drink anything?", "No, I do not need to drink.", "drink", "any"),
    ("I drink it in the morning.", "That sounds like a nice habit.", "drink", "any"),
    ("Do you like animals?", "Yes, animals are lovely.", "pet", "any"),
    ("I feed my pet every day.", "That is kind of you.", "pet", "any"),
    ("It is a big city.", "Big cities are busy places.", "city", "any"),
    ("Have you been there?", "No, I cannot travel.", "city", "any"),
    ("Do you like colours?", "Yes, colours make things bright.", "colour", "any"),
    ("I paint with it a lot.", "Painting is a fun hobby.", "colour", "any"),
    ("I eat it every week.", "That sounds tasty.", "food", "any"),
    ("Do you eat food?", "No, I do not need to eat.", "food", "any"),
    ("I play it every weekend.", "That is a good way to stay fit.", "sport", "any"),
    ("Do you play sports?", "No, I do not have a body.", "sport", "any"),
    ("I like my work.", "It is good to enjoy your work.", "job", "any"),
    ("Work was busy today.", "I hope you can rest now.", "job", "any"),
]


# ---- Q&A building ----

def greetings_clusters() -> list[tuple[list[str], str]]:
    """Greeting words times optional address times end mark; each cluster has one answer."""
    clusters = []
    for words, addressable, answer in GREETINGS:
        suffixes = ["", f", {BOT}"] if addressable else [""]
        qs = [w + s + p for w in words for s in suffixes for p in ("!", ".")]
        clusters.append((qs, answer))
    return clusters + [(list(qs), a) for qs, a in GREETING_QUESTIONS]


def facts_clusters() -> list[tuple[list[str], str]]:
    """Colours, animal sounds and legs, shapes, days, months, seasons, numbers, opposites."""
    c: list[tuple[list[str], str]] = []
    for thing, col in COLOURS:
        c.append(([f"What colour is {thing}?", f"What color is {thing}?",
                   f"What is the colour of {thing}?"], f"{_cap(thing)} is {col}."))
    for animal, sound in SOUNDS:
        a = f"{_an(animal)} {animal}"
        c.append(([f"What does {a} say?", f"What sound does {a} make?",
                   f"What noise does {a} make?"], f"{_cap(a)} says {sound}."))
    for animal, n in LEGS:
        a = f"{_an(animal)} {animal}"
        c.append(([f"How many legs does {a} have?", f"How many legs has {a}?"],
                  f"{_cap(a)} has {n} legs."))
    for shape, n in SIDES:
        c.append(([f"How many sides does a {shape} have?", f"How many sides has a {shape}?"],
                  f"A {shape} has {n} sides."))
    c += [(list(qs), a) for qs, a in COUNTS]
    c += _order_clusters(DAYS, "day")
    c += _order_clusters(MONTHS, "month")
    c += _order_clusters(SEASONS, "season")
    for n in range(31):
        c.append(([f"What number comes after {n}?", f"What comes after {n}?"],
                  f"{n + 1} comes after {n}."))
        if n > 0:
            c.append(([f"What number comes before {n}?", f"What comes before {n}?"],
                      f"{n - 1} comes before {n}."))
    c += _opposite_clusters()
    return c


def _order_clusters(seq: list[str], kind: str) -> list[tuple[list[str], str]]:
    """After/before questions for a cyclic sequence (days, months, seasons)."""
    out = []
    for i, x in enumerate(seq):
        nxt, prv = seq[(i + 1) % len(seq)], seq[i - 1]
        out.append(([f"What {kind} comes after {x}?", f"What {kind} is after {x}?",
                     f"Which {kind} follows {x}?"], f"{_cap(nxt)} comes after {x}."))
        out.append(([f"What {kind} comes before {x}?", f"What {kind} is before {x}?"],
                     f"{_cap(prv)} comes before {x}."))
    return out


def _opposite_clusters() -> list[tuple[list[str], str]]:
    """Both directions of each pair, skipping a word that would get two answers."""
    seen: dict[str, list[str]] = {}
    for a, b in OPPOSITES:
        seen.setdefault(a, []).append(b)
        seen.setdefault(b, []).append(a)
    out = []
    for w in sorted(seen):
        if len(seen[w]) != 1:
            continue
        o = seen[w][0]
        out.append(([f"What is the opposite of {w}?", f"What is the opposite of the word {w}?",
                     f"Give me the opposite of {w}."], f"The opposite of {w} is {o}."))
    return out


def usage_clusters() -> list[tuple[list[str], str]]:
    out = []
    for np_, kind, purpose in USAGE:
        be = "are" if kind == "pl" else "is"
        qs = [f"What do you use {np_} for?", f"What {be} {np_} for?", f"What {be} {np_} used for?"]
        out.append((qs, f"You use {np_} to {purpose}."))
    return out


def assistant_clusters() -> list[tuple[list[str], str]]:
    return [(list(qs), a) for qs, a in ASSISTANT]


def split_clusters(clusters, rng: random.Random) -> dict[str, list[tuple[str, str]]]:
    """First question of each cluster stays in train; ~10% + ~10% of all go to val/test."""
    train, extras = [], []
    for qs, a in clusters:
        qs = list(qs)
        rng.shuffle(qs)
        train.append((qs[0], a))
        extras += [(q, a) for q in qs[1:]]
    rng.shuffle(extras)
    total = len(train) + len(extras)
    n_held = min(round(0.1 * total), len(extras) // 2)
    return {"val": extras[:n_held], "test": extras[n_held:2 * n_held],
            "train": train + extras[2 * n_held:]}


def arithmetic_split(rng: random.Random) -> dict[str, list[tuple[str, str]]]:
    """Unordered operand pairs {a, b} from 0..20 go wholly to one split (a+b, b+a, max-min)."""
    pairs = [(a, b) for a in range(21) for b in range(a, 21)]
    rng.shuffle(pairs)
    n = round(0.1 * len(pairs))
    groups = {"val": pairs[:n], "test": pairs[n:2 * n], "train": pairs[2 * n:]}
    out: dict[str, list[tuple[str, str]]] = {}
    for split, group in groups.items():
        out[split] = [item for a, b in sorted(group) for item in _pair_items(rng, a, b)]
    return out


def _pair_items(rng: random.Random, a: int, b: int) -> list[tuple[str, str]]:
    """The questions of one operand pair a <= b: a plus b, b plus a (once when a == b), b minus a."""
    items = [_arith_item(rng, x, "plus", y, x + y) for x, y in sorted({(a, b), (b, a)})]
    return items + [_arith_item(rng, b, "minus", a, b - a)]


# Training arithmetic reaches past the held-out range: every pair with an operand in 21..ARITH_TRAIN_MAX
# as well. With operands 0..20 alone a model learns the table it is shown (100% on its pairs, 60-69% on
# unseen ones at best); with 0..49 a digit's sum must be learnt apart from the number it sits in, and
# unseen 0..20 pairs came out 97-100% exact (arithmetic alone, rotary positions, smeared keys, decay 0.1).
ARITH_TRAIN_MAX = 49


def wide_arithmetic(rng: random.Random) -> list[tuple[str, str, str]]:
    """(level, question, answer) for every pair {a, b} with max(a, b) in 21..ARITH_TRAIN_MAX: never a
    held-out pair, as those are all within 0..20."""
    return [("arithmetic", q, ans) for b in range(21, ARITH_TRAIN_MAX + 1) for a in range(b + 1)
            for q, ans in _pair_items(rng, a, b)]


def _arith_item(rng: random.Random, x: int, op: str, y: int, r: int) -> tuple[str, str]:
    form = rng.choice(["What is {}?", "How much is {}?", "What is {}?"])  # 2:1 for "What is"
    return form.format(f"{x} {op} {y}"), f"{x} {op} {y} is {r}."


def build_qa(rng: random.Random) -> dict[str, list[tuple[str, str, str]]]:
    """split -> shuffled list of (level, question, answer)."""
    makers = {"greetings": greetings_clusters, "facts": facts_clusters,
              "usage": usage_clusters, "assistant": assistant_clusters}
    by_split: dict[str, list[tuple[str, str, str]]] = {s: [] for s in SPLITS}
    for level in LEVELS:
        parts = arithmetic_split(rng) if level == "arithmetic" else split_clusters(makers[level](), rng)
        for split in SPLITS:
            by_split[split] += [(level, q, a) for q, a in parts[split]]
    for split in SPLITS:
        rng.shuffle(by_split[split])
    return by_split


# ---- dialogue building ----

def _fill(template: str, value: str) -> str:
    art = _an(value)
    return template.format(v=value, V=_cap(value), a=art, A=_cap(art))


def _layout(rng: random.Random, slots: list[str], gaps: dict[str, int]) -> list[tuple] | None:
    """One random order of facts, recalls and fillers; None if a constraint or gap fails."""
    k = len(slots)
    n_fill = rng.choices(range(7 - 2 * k), weights=[4, 4, 3, 2, 1][: 7 - 2 * k])[0]
    fill_pool = [f for f in FILLERS if f[2] is None or f[2] in slots]
    items = [("fact", s) for s in slots] + [("recall", s) for s in slots]
    items += [("filler", f) for f in rng.sample(fill_pool, n_fill)]
    rng.shuffle(items)
    pos = {(kind, s): i for i, (kind, s) in enumerate(items) if kind != "filler"}
    for s in slots:
        if pos[("recall", s)] - pos[("fact", s)] != gaps[s]:
            return None
    for i, (kind, x) in enumerate(items):
        if kind != "filler":
            continue
        if x[3] == "first" and i != 0 or x[3] == "last" and i != len(items) - 1:
            return None
        if x[2] is not None and i < pos[("fact", x[2])]:
            return None
    return items


def make_dialogue(rng: random.Random, split: str) -> tuple[list[tuple[str, str]], dict]:
    """One dialogue (list of (q, a) turns) and its slot record."""
    while True:
        slots = rng.sample(sorted(POOLS), 1 if rng.random() < 0.6 else 2)
        gaps = {s: rng.randint(1, 3) for s in slots}  # turns from fact to its recall
        items = None
        for _ in range(200):
            items = _layout(rng, slots, gaps)
            if items is not None:
                break
        if items is None:
            continue
        values = {s: rng.choice(POOLS[s][SPLITS.index(split)]) for s in slots}
        turns, recalls = [], []
        fact_turn, mirror = {}, {}
        for i, (kind, x) in enumerate(items):
            if kind == "filler":
                turns.append((x[0], x[1]))
                continue
            fact_qs, fact_a, recall_qs = DIALOGUE_TEMPLATES[x]
            v = values[x]
            if kind == "fact":
                choices = fact_qs[:4] if (x == "name" and i == 0) else fact_qs
                if x == "name" and i > 0:
                    choices = fact_qs[4:]
                fact_q, mirror[x] = rng.choice(choices)
                turns.append((_fill(fact_q, v), _fill(fact_a, v)))
                fact_turn[x] = i
            else:
                turns.append((rng.choice(recall_qs), _fill(mirror[x], v)))
                recalls.append({"turn": i, "slot": x, "value": v, "fact_turn": fact_turn[x]})
        if len(dialogue_text(turns)) > MAX_DIALOGUE_CHARS:
            continue
        topic = sorted({TOPIC_WORD[s] for s in slots} | {values[s].lower() for s in slots})
        return turns, {"n_turns": len(turns), "slots": recalls, "topic": topic}


def dialogue_text(turns: list[tuple[str, str]]) -> str:
    return "".join(f"Q: {q}\nA: {a}\n" for q, a in turns)


# ---- chat corpus: a second, wider family of fact phrasings; Q&A, arithmetic and out-of-domain
#      questions at any turn. Every user phrasing list is split three ways: train, val (the
#      paraphrase split, for tuning) and test (a held-out family never tuned on). ----

DONT_KNOW = "I don't know that yet."
N_CHAT = {"train": 2000, "val": 160, "test": 160}
MAX_CHAT_CHARS = 280
RELATIONS = ("brother", "sister")

# slot -> value pools (train, val, test), facts {split: [(statement, ack)]}, asks {split: [question]},
# the recall answer, and the words that name the slot in it ({r} is the sibling's relation).
# {v} value, {V} capitalised, {a}/{A} its article. val and test phrasings never occur in train.
CHAT_SLOTS = {
    "name": {
        "values": (POOLS["name"][0],
                   "Marek Tilda Odile Kwame Saoirse Anouk Bjorn Cosima Farah Leopold".split(),
                   "Ansel Brigid Corin Delphine Ezra Fenna Gideon Halima Isak Jorunn".split()),
        "facts": {"train": ["My name is {V}.", "I am {V}.", "Call me {V}.", "You can call me {V}.",
                            "Hi, I am {V}.", "Everyone calls me {V}."],
                  "val": ["I'm called {V}.", "The name's {V}."],
                  "test": ["People know me as {V}.", "Hello, my name's {V}."]},
        "ack": "Nice to meet you, {V}.",
        "asks": {"train": ["What is my name?", "Do you know my name?", "Who am I?",
                           "Can you tell me my name?", "What do people call me?"],
                 "val": ["What's my name again?", "Do you remember what I am called?"],
                 "test": ["Remind me of my name.", "What name did I give you?"]},
        "answer": "Your name is {V}.", "words": ["name"]},
    "likes": {
        "values": ("jazz trains puzzles rain books music films poems stars maps games boats flowers "
                   "clocks robots castles".split(),
                   "origami lanterns marbles".split(), "fossils comets violins".split()),
        "facts": {"train": ["I like {v}.", "I really like {v}.", "I am fond of {v}.", "I enjoy {v}.",
                            "I love {v}."],
                  "val": ["I'm a big fan of {v}.", "I adore {v}."],
                  "test": ["I'm crazy about {v}.", "Nothing beats {v} for me."]},
        "ack": "I will remember that you like {v}.",
        "asks": {"train": ["What do I like?", "What did I say I like?", "Do you know what I like?",
                           "What am I fond of?"],
                 "val": ["What was it that I love?", "What's the thing I'm a fan of?"],
                 "test": ["Remind me what I enjoy.", "What did I tell you I love?"]},
        "answer": "You told me you like {v}.", "words": ["like"]},
    "hobby": {
        "values": ("fishing knitting hiking running cooking drawing singing dancing reading gardening "
                   "swimming cycling baking climbing sewing painting".split(),
                   "juggling sculpting birdwatching".split(), "fencing rowing woodworking".split()),
        "facts": {"train": ["My hobby is {v}.", "I enjoy {v} in my free time.",
                            "In my spare time I love {v}.", "I spend my weekends {v}.",
                            "I am really into {v}."],
                  "val": ["My favourite pastime is {v}.", "I'm hooked on {v}."],
                  "test": ["What relaxes me is {v}.", "I'm passionate about {v}."]},
        "ack": "{V} is a great hobby.",
        "asks": {"train": ["What is my hobby?", "What do I do for fun?", "What do I do in my free time?",
                           "How do I spend my weekends?"],
                 "val": ["What's my favourite pastime?", "What am I hooked on?"],
                 "test": ["Remind me of my hobby.", "What do I love doing when I'm free?"]},
        "answer": "Your hobby is {v}.", "words": ["hobby"]},
    "food": {
        "values": (POOLS["food"][0], "gnocchi risotto kebab".split(), "couscous tempura pierogi".split()),
        "facts": {"train": ["My favourite food is {v}.", "I love eating {v}.", "I could eat {v} every day.",
                            "My favourite meal is {v}.", "I like to eat {v}."],
                  "val": ["Nothing tastes better than {v}.", "My best dish is {v}."],
                  "test": ["I always order {v}.", "My top food is {v}."]},
        "ack": "{V} sounds tasty.",
        "asks": {"train": ["What is my favourite food?", "What food do I love?", "What do I like to eat?",
                           "Which food did I mention?"],
                 "val": ["What's my favourite thing to eat?", "What dish do I like best?"],
                 "test": ["Remind me of my favourite food.", "What food did I say I like?"]},
        "answer": "Your favourite food is {v}.", "words": ["food"]},
    "colour": {
        "values": (POOLS["colour"][0], "amber turquoise lilac".split(), "crimson beige scarlet".split()),
        "facts": {"train": ["My favourite colour is {v}.", "I love the colour {v}.",
                            "My favorite color is {v}.", "{V} is the colour I like.", "{V} is my colour."],
                  "val": ["The colour I like most is {v}.", "I always pick {v}."],
                  "test": ["I'm always wearing {v}.", "My best colour is {v}."]},
        "ack": "{V} is a fine colour.",
        "asks": {"train": ["What is my favourite colour?", "What colour do I like?", "Which colour is mine?",
                           "What is my favorite color?"],
                 "val": ["What's my favourite colour again?", "Which colour did I pick?"],
                 "test": ["Remind me of my favourite colour.", "Do you recall my colour?"]},
        "answer": "Your favourite colour is {v}.", "words": ["colour"]},
    "city": {
        "values": (POOLS["city"][0], "Kyoto Munich Krakow".split(), "Osaka Lyon Antwerp".split()),
        "facts": {"train": ["I live in {V}.", "My home is in {V}.", "I am from {V}.", "I grew up in {V}.",
                            "My city is {V}."],
                  "val": ["I'm based in {V}.", "Home for me is {V}."],
                  "test": ["I reside in {V}.", "I moved to {V} last year."]},
        "ack": "{V} sounds like a nice place.",
        "asks": {"train": ["Where do I live?", "What is my city?", "Where is my home?",
                           "Which city am I from?"],
                 "val": ["Where am I based?", "What's my home town?"],
                 "test": ["Remind me where I live.", "Which city did I mention?"]},
        "answer": "You live in {V}.", "words": ["live"]},
    "job": {
        "values": (POOLS["job"][0], "librarian architect mechanic".split(),
                   "carpenter pharmacist journalist".split()),
        "facts": {"train": ["I am {a} {v}.", "I work as {a} {v}.", "I have a job as {a} {v}.",
                            "For work I am {a} {v}.", "I earn my living as {a} {v}."],
                  "val": ["I'm {a} {v} by trade.", "My job title is {v}."],
                  "test": ["I make a living as {a} {v}.", "By profession I am {a} {v}."]},
        "ack": "Being {a} {v} must be interesting.",
        "asks": {"train": ["What is my job?", "What do I do for work?", "What do I work as?",
                           "What is my work?"],
                 "val": ["What's my job again?", "How do I earn my living?"],
                 "test": ["Remind me of my job.", "What did I say I do for a living?"]},
        "answer": "You work as {a} {v}.", "words": ["work"]},
    "sibling": {
        "values": ("Ada Ben Cal Dora Eli Fay Gil Hal Ida Jay Kim Lou Max Ned Ona Pam Rex Sue Ted Uma "
                   "Val Wes".split(),
                   "Moritz Ottilie Casimir".split(), "Philippa Tobiah Annika".split()),
        "facts": {"train": ["My {r} is called {V}.", "I have a {r} called {V}.", "My {r}'s name is {V}.",
                            "I have a {r} named {V}.", "{V} is my {r}."],
                  "val": ["My {r} goes by {V}.", "My little {r} is {V}."],
                  "test": ["My big {r} is named {V}.", "I grew up with my {r} {V}."]},
        "ack": "{V} is a nice name for a {r}.",
        "asks": {"train": ["What is my {r} called?", "What is my {r}'s name?", "Who is my {r}?",
                           "Do you know my {r}'s name?"],
                 "val": ["What's my {r} called again?", "Who's my {r} again?"],
                 "test": ["What name does my {r} have?", "Can you recall my {r}'s name?"]},
        "answer": "Your {r} is called {V}.", "words": ["{r}"]},
    "age": {
        "values": ([str(n) for n in range(15, 70)], "71 74 78 83".split(), "72 76 81 86".split()),
        "facts": {"train": ["I am {v} years old.", "I am {v}.", "My age is {v}.", "I turned {v} this year.",
                            "I have just turned {v}."],
                  "val": ["I'm {v} years old.", "My last birthday made me {v}."],
                  "test": ["I'm {v} now.", "I'm aged {v}."]},
        "ack": "{V} is a good age.",
        "asks": {"train": ["How old am I?", "What is my age?", "Do you know my age?", "How many years old am I?"],
                 "val": ["What's my age again?", "How old did I say I am?"],
                 "test": ["Remind me how old I am.", "What age am I?"]},
        "answer": "You are {v} years old.", "words": ["old"]},
    "pet": {
        "values": (POOLS["pet"][0], "hedgehog tortoise budgie".split(), "meerkat alpaca gecko".split()),
        "facts": {"train": ["I have {a} {v}.", "My pet is {a} {v}.", "I own {a} {v}.",
                            "I keep {a} {v} at home.", "We have {a} {v}."],
                  "val": ["I look after {a} {v}.", "My best friend is my {v}."],
                  "test": ["At home I care for {a} {v}.", "I adopted {a} {v}."]},
        "ack": "{A} {v} is a lovely pet.",
        "asks": {"train": ["What pet do I have?", "What is my pet?", "What animal do I own?",
                           "Do you know my pet?"],
                 "val": ["What's my pet again?", "Which animal do I look after?"],
                 "test": ["Remind me what pet I have.", "What kind of animal did I adopt?"]},
        "answer": "Your pet is {a} {v}.", "words": ["pet"]},
}

# The wider training family. A question the model has seen in only four or five whole forms is
# learnt as a string, and a new form gets a memorised answer ("How old did I say I am?" -> "You live
# in ..."). Here every slot is asked through several frames around several ways of naming it, and
# stated after several openers, so the slot must be read from its own words. The frames and openers
# avoid the held-out families' marks ("again", "remind", "recall", "remember", "what's", "I'm"):
# validate_chat checks that no held-out phrasing is generated.
ASK_FRAMES = ("Do you know {o}?", "Can you tell me {o}?", "Tell me {o}.", "Please tell me {o}.",
              "Could you tell me {o}?", "Do you still know {o}?", "I forgot {o}. Do you know?",
              "Say {o}, please.")
ASK_OBJECTS = {
    "name": ["my name", "what I am called", "what my name is", "what people call me"],
    "likes": ["what I like", "what I am fond of", "the thing I like", "what I said I like"],
    "hobby": ["my hobby", "what I do for fun", "what my hobby is", "what I do in my free time"],
    "food": ["my favourite food", "what I like to eat", "the food I love", "what my favourite meal is"],
    "colour": ["my favourite colour", "the colour I like", "what my colour is", "my favorite color"],
    "city": ["where I live", "my city", "where my home is", "the city I live in"],
    "job": ["my job", "what I do for work", "what I work as", "what my job is"],
    "sibling": ["my {r}'s name", "what my {r} is called", "who my {r} is", "the name of my {r}"],
    "age": ["my age", "how old I am", "how many years old I am", "what my age is"],
    "pet": ["my pet", "what pet I have", "what animal I own", "what my pet is"],
}
FACT_OPENERS = ("By the way, ", "Just so you know, ", "Oh, and ", "For the record, ")


@functools.cache
def train_phrasings(slot: str, key: str) -> tuple[str, ...]:
    """The training phrasings of a slot's facts or asks: the hand-written ones, then the wider family
    (built once; every training chat draws from it)."""
    spec = CHAT_SLOTS[slot]
    base = list(spec[key]["train"])
    if key == "asks":
        wide = [f.format(o=o) for f in ASK_FRAMES for o in ASK_OBJECTS[slot]]
    else:  # an opener before each hand-written statement that starts with a word, not the value
        wide = [o + (t if t.startswith("I ") else t[0].lower() + t[1:])
                for o in FACT_OPENERS for t in base if not t.startswith(("{", "Hi"))]
    return tuple(base + [w for w in wide if w not in base])


# out-of-domain families: questions no corpus here teaches, answered DONT_KNOW; a family is
# [(template, entities)], and the families are split whole: train, val (history), test (culture)
OOD_FAMILIES = {
    "geography": ("train", [
        ("What is the capital of {x}?", "Peru Chile Norway Kenya Nepal Laos Fiji Cuba Mali Chad Oman Togo "
                                        "Gabon Benin Sudan Bolivia Latvia Malta".split()),
        ("How many people live in {x}?", "Peru Chile Norway Kenya Nepal Cuba Bolivia Malta".split()),
        ("What is the longest river in {x}?", "Peru Chile Norway Kenya Nepal Bolivia".split())]),
    "science": ("train", [
        ("What is the boiling point of {x}?", "iron copper mercury helium neon argon sodium zinc tin "
                                              "lead".split()),
        ("What is the atomic number of {x}?", "iron copper mercury helium neon argon sodium zinc".split()),
        ("Why is {x} a metal?", "iron copper sodium zinc tin lead".split())]),
    "space": ("train", [
        ("How far away is {x}?", ["Mars", "Venus", "Jupiter", "Saturn", "Neptune", "Uranus", "Pluto",
                                  "the moon"]),
        ("How many moons does {x} have?", ["Mars", "Jupiter", "Saturn", "Neptune", "Uranus"]),
        ("How hot is the surface of {x}?", ["Mars", "Venus", "Mercury", "the sun"])]),
    "inventions": ("train", [
        ("Who invented the {x}?", ["telephone", "radio", "bicycle", "television", "steam engine",
                                   "light bulb", "printing press", "compass", "microscope"]),
        ("When was the {x} invented?", ["telephone", "radio", "television", "light bulb", "microscope"]),
        ("How does a {x} work?", ["radio", "telephone", "microscope", "jet engine", "satellite"])]),
    "news": ("train", [
        ("What will the weather be like in {x} tomorrow?", POOLS["city"][0][:12]),
        ("What is the news in {x} today?", POOLS["city"][0][12:20]),
        ("What is the price of {x} today?", ["gold", "oil", "bread", "petrol", "a house"])]),
    "history": ("val", [
        ("When did {x} begin?", ["the Roman Empire", "the Inca Empire", "the Mughal Empire",
                                 "the Ming dynasty", "the Bronze Age", "the Iron Age"]),
        ("Who ruled {x}?", ["the Roman Empire", "the Inca Empire", "Carthage", "Sparta", "Babylon"]),
        ("Why did {x} fall?", ["the Roman Empire", "the Aztec Empire", "Carthage", "Babylon", "Troy"])]),
    "culture": ("test", [
        ("Who wrote {x}?", ["Hamlet", "Don Quixote", "War and Peace", "Moby Dick", "Beowulf",
                            "the Odyssey", "Macbeth"]),
        ("Who painted {x}?", ["the Mona Lisa", "the Night Watch", "the Starry Night", "Guernica"]),
        ("Who composed {x}?", ["the Four Seasons", "the Magic Flute", "Swan Lake", "Carmen"])]),
}
# small talk; "What is 2 plus 2?" is left out, as {2, 2} is a held-out qa pair
CHAT_FILLERS = [(q, a) for q, a, slot, place in FILLERS
                if slot is None and place == "any" and "plus" not in q]
# extra training arithmetic: pairs with an operand in 21..30, none of them a held-out qa pair
EXTRA_ARITH_MAX = 30


def ood_questions(split: str) -> list[tuple[str, str]]:
    """(question, family) of every out-of-domain family assigned to split."""
    return [(t.format(x=x), fam) for fam, (s, parts) in sorted(OOD_FAMILIES.items()) if s == split
            for t, xs in parts for x in xs]


def _arith_parts(question: str) -> tuple[int, str, int]:
    m = re.search(r"(\d+) (plus|minus) (\d+)", question)
    return int(m.group(1)), m.group(2), int(m.group(3))


def chat_arithmetic(qa: dict, rng: random.Random) -> dict[str, list[tuple[str, str, str]]]:
    """(question, answer, op) per split: the qa corpus' arithmetic (its held-out pairs stay held out)
    plus, for train only, every pair with an operand in 21..EXTRA_ARITH_MAX."""
    out = {s: [(q, a, _arith_parts(q)[1]) for lv, q, a in qa[s] if lv == "arithmetic"] for s in SPLITS}
    out["train"] += [(q, ans, _arith_parts(q)[1]) for a in range(EXTRA_ARITH_MAX + 1)
                     for b in range(max(a, 21), EXTRA_ARITH_MAX + 1) for q, ans in _pair_items(rng, a, b)]
    return out


def _fill_slot(template: str, value: str, rel: str) -> str:
    art = _an(value)
    return template.format(v=value, V=_cap(value), a=art, A=_cap(art), r=rel)


class _Cycle:
    """Draw items in shuffled order, reshuffling when used up, so every item is used about evenly."""

    def __init__(self, items, rng):
        self.items, self.rng, self.left = list(items), rng, []

    def next(self):
        if not self.left:
            self.left = list(self.items)
            self.rng.shuffle(self.left)
        return self.left.pop()


def _chat_layout(rng: random.Random, slots: list[str], n_extra: int) -> list[tuple[str, str]] | None:
    items = [("fact", s) for s in slots] + [("recall", s) for s in slots] + [("extra", "")] * n_extra
    rng.shuffle(items)
    for s in slots:
        gap = items.index(("recall", s)) - items.index(("fact", s))
        if not 1 <= gap <= 3:
            return None
    return items


def make_chat_dialogue(rng: random.Random, split: str, sources: dict) -> tuple[list, dict]:
    """One chat dialogue: facts asked back, mixed with Q&A, arithmetic, out-of-domain and small talk."""
    while True:
        k = rng.choices([0, 1, 2, 3], weights=[2, 5, 5, 1])[0]  # three facts rarely fit: retried
        slots = rng.sample(sorted(CHAT_SLOTS), k)
        n_extra = rng.randint(1 if k < 2 else 0, 6 - 2 * k) if k < 3 else 0
        if k == 0:
            n_extra = rng.randint(2, 4)
        items = None
        for _ in range(200):
            items = _chat_layout(rng, slots, n_extra)
            if items is not None:
                break
        if items is None:
            continue
        turns, kinds, recalls, facts = [], [], [], {}
        for i, (kind, s) in enumerate(items):
            if kind == "extra":
                what = rng.choices(["qa", "arith", "ood", "filler"], weights=[4, 2, 3, 1])[0]
                q, a, info = sources[what].next()
                turns.append((q, a))
                kinds.append({"kind": what, **info})
                continue
            spec = CHAT_SLOTS[s]
            if kind == "fact":
                value = rng.choice(spec["values"][SPLITS.index(split)])
                rel = rng.choice(RELATIONS)
                tpl = rng.choice(train_phrasings(s, "facts") if split == "train" else spec["facts"][split])
                facts[s] = (value, rel, i, tpl)
                turns.append((_fill_slot(tpl, value, rel), _fill_slot(spec["ack"], value, rel)))
                kinds.append({"kind": "fact", "slot": s, "template": tpl})
            else:
                value, rel, fact_turn, fact_tpl = facts[s]
                ask = rng.choice(train_phrasings(s, "asks") if split == "train" else spec["asks"][split])
                turns.append((_fill_slot(ask, value, rel), _fill_slot(spec["answer"], value, rel)))
                kinds.append({"kind": "recall", "slot": s, "template": ask})
                recalls.append({"turn": i, "fact_turn": fact_turn, "slot": s, "value": value,
                                "words": [w.format(r=rel) for w in spec["words"]]})
        if len(dialogue_text(turns)) > MAX_CHAT_CHARS:
            continue
        topic = sorted({r["value"].lower() for r in recalls} | {r["slot"] for r in recalls})
        return turns, {"n_turns": len(turns), "slots": recalls, "turns": kinds, "topic": topic}


def chat_sources(qa: dict, arith: dict, split: str, rng: random.Random) -> dict:
    """Per kind of extra turn, a cycle of (question, answer, annotation) for split."""
    qa_items = [(q, a, {"level": lv}) for lv, q, a in qa[split] if lv != "arithmetic"]
    return {"qa": _Cycle(qa_items, rng),
            "arith": _Cycle([(q, a, {"op": op}) for q, a, op in arith[split]], rng),
            "ood": _Cycle([(q, DONT_KNOW, {"family": f}) for q, f in ood_questions(split)], rng),
            "filler": _Cycle([(q, a, {}) for q, a in CHAT_FILLERS], rng)}


def build_chat(qa: dict, rng: random.Random) -> dict[str, list[tuple[list, dict]]]:
    """split -> [(turns, record)]. train also holds every qa train pair, training arithmetic item and
    training out-of-domain question as a one-turn chat, so each is learnt in a fresh chat too."""
    arith = chat_arithmetic(qa, rng)
    out = {}
    for split in SPLITS:
        src = chat_sources(qa, arith, split, rng)
        rows = [make_chat_dialogue(rng, split, src) for _ in range(N_CHAT[split])]
        if split == "train":
            singles = [(q, a, {"kind": "qa", "level": lv}) for lv, q, a in qa["train"] if lv != "arithmetic"]
            singles += [(q, a, {"kind": "arith", "op": op}) for q, a, op in arith["train"]]
            singles += [(q, DONT_KNOW, {"kind": "ood", "family": f}) for q, f in ood_questions("train")]
            rows += [([(q, a)], {"n_turns": 1, "slots": [], "turns": [info], "topic": []})
                     for q, a, info in singles]
            rng.shuffle(rows)
        if split == "train":  # the phrasing annotations matter for held-out turns; keep train's file small
            for _, rec in rows:
                rec["turns"] = [{k: v for k, v in t.items() if k != "template"} for t in rec["turns"]]
        out[split] = rows
    return out


def validate_chat(chat: dict) -> None:
    """Raise ValueError if a held-out chat split shares a phrasing or slot value with train."""
    train_text = " ".join(q + " " + a for turns, _ in chat["train"] for q, a in turns).lower()
    train_words = set(re.findall(r"[a-z0-9']+", train_text))
    for slot, spec in CHAT_SLOTS.items():
        for i, split in enumerate(SPLITS[1:], start=1):
            for v in spec["values"][i]:
                if v.lower() in train_words or v in spec["values"][0]:
                    raise ValueError(f"chat {split}: {slot} value {v!r} occurs in training text")
            for key in ("facts", "asks"):
                if set(spec[key][split]) & set(train_phrasings(slot, key)):
                    raise ValueError(f"chat {split}: a {slot} {key} phrasing is also a train phrasing")


# ---- writing ----

def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))


def generate(out_dir: Path) -> None:
    """Write qa/{split}.txt, qa/{split}.levels, dialogue/{split}.txt, dialogue/{split}.slots.jsonl."""
    out_dir = Path(out_dir)
    rng = random.Random(SEED)
    qa = build_qa(rng)
    wide = random.Random(SEED + 2)  # its own stream: every other file stays as it was
    qa_train = qa["train"] + wide_arithmetic(wide)
    wide.shuffle(qa_train)
    for split in SPLITS:
        rows = qa_train if split == "train" else qa[split]
        _write(out_dir / "qa" / f"{split}.txt",
               "\n".join(f"Q: {q}\nA: {a}\n" for _, q, a in rows))
        _write(out_dir / "qa" / f"{split}.levels", "".join(f"{lv}\n" for lv, _, _ in rows))
    for split in SPLITS:
        dialogues = [make_dialogue(rng, split) for _ in range(N_DIALOGUES[split])]
        _write(out_dir / "dialogue" / f"{split}.txt",
               "\n".join(dialogue_text(t) for t, _ in dialogues))
        lines = []
        for i, (_, rec) in enumerate(dialogues):
            lines.append(json.dumps({"dialogue": i, **rec}, sort_keys=True))
        _write(out_dir / "dialogue" / f"{split}.slots.jsonl", "".join(x + "\n" for x in lines))
    # its own stream: the files above stay as they were. Chat keeps the qa corpus' 0..20 training
    # arithmetic (qa, not qa_train) and adds its own 21..EXTRA_ARITH_MAX: with all of 0..49 (two runs)
    # recall rose but the out-of-domain don't-know fell (README)
    chat = build_chat(qa, random.Random(SEED + 1))
    validate_chat(chat)
    for split in SPLITS:
        _write(out_dir / "chat" / f"{split}.txt", "\n".join(dialogue_text(t) for t, _ in chat[split]))
        _write(out_dir / "chat" / f"{split}.slots.jsonl",
               "".join(json.dumps({"dialogue": i, **rec}, sort_keys=True) + "\n"
                       for i, (_, rec) in enumerate(chat[split])))
    validate(out_dir)


def validate(out_dir: Path) -> None:
    """Raise ValueError if an output breaks the corpus rules (charset, answer length)."""
    for path in sorted(Path(out_dir).glob("*/*.txt")):
        text = path.read_text(encoding="utf-8")
        bad = sorted(set(text) - ALLOWED_CHARS)
        if bad:
            raise ValueError(f"{path}: characters outside the allowed set: {bad!r}")
        for line in text.splitlines():
            if line.startswith("A: ") and len(line) - 3 > MAX_ANSWER:
                raise ValueError(f"{path}: answer longer than {MAX_ANSWER} chars: {line!r}")


OUTPUTS = [f"qa/{s}.{e}" for s in SPLITS for e in ("txt", "levels")] + \
          [f"{c}/{s}.{e}" for c in ("dialogue", "chat") for s in SPLITS for e in ("txt", "slots.jsonl")]


def check(committed: Path) -> list[str]:
    """Regenerate into a temp dir; return the output paths that differ from committed."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        diff = []
        for rel in OUTPUTS:
            a, b = Path(tmp) / rel, committed / rel
            if not b.exists() or a.read_bytes() != b.read_bytes():
                diff.append(rel)
        return diff


def stats(out_dir: Path) -> str:
    """Human-readable counts per level and split, bytes and character sets."""
    lines = []
    for split in SPLITS:
        levels = (out_dir / "qa" / f"{split}.levels").read_text().split()
        counts = {lv: levels.count(lv) for lv in LEVELS}
        lines.append(f"qa {split}: {len(levels)} pairs {counts}")
    for split in SPLITS:
        text = (out_dir / "dialogue" / f"{split}.txt").read_text()
        dlg = text.split("\n\n")
        lens = sorted(len(d) + 1 for d in dlg)
        lines.append(f"dialogue {split}: {len(dlg)} dialogues, chars median {lens[len(lens) // 2]}"
                     f" max {lens[-1]}, over 250: {sum(n > 250 for n in lens)}")
    for split in SPLITS:
        rows = [json.loads(x) for x in (out_dir / "chat" / f"{split}.slots.jsonl").read_text().splitlines()]
        kinds = [t["kind"] for r in rows for t in r["turns"]]
        lines.append(f"chat {split}: {len(rows)} chats, turns " +
                     str({k: kinds.count(k) for k in ("fact", "recall", "qa", "arith", "ood", "filler")}))
    for corpus in ("qa", "dialogue", "chat"):
        text = "".join((out_dir / corpus / f"{s}.txt").read_text() for s in SPLITS)
        lines.append(f"{corpus}: {len(text.encode())} bytes, {len(set(text))} distinct chars")
    total = sum((out_dir / rel).stat().st_size for rel in OUTPUTS)
    lines.append(f"all outputs: {total} bytes")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare a fresh generation, write nothing")
    p.add_argument("--stats", action="store_true", help="print counts of the committed files")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = p.parse_args(argv)
    if args.check:
        diff = check(args.out)
        for rel in diff:
            print(f"differs from a fresh generation: {args.out / rel}", file=sys.stderr)
        if diff:
            print("run `python corpora/generate.py` to regenerate", file=sys.stderr)
        return 1 if diff else 0
    if not args.stats:
        generate(args.out)
    print(stats(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
