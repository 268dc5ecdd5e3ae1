"""BIG-Bench Hard stand-in items: every one of the 27 subtasks, a few made-up items each.

Items follow each subtask's input/target format (options as "(A) ...", yes/no and valid/invalid
answers, word lists, bracket sequences). Where the task is mechanical (boolean expressions,
arithmetic, sorting, brackets, counting, shuffles, lies, navigation, dates, colours, deduction)
the items are generated and their targets computed; the others are written out here.
"""
from __future__ import annotations

import datetime
import random

LETTERS = "ABCDEFGHIJKLMNOPQR"


def _options(choices: list[str]) -> str:
    return "Options:\n" + "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))


def _mc(rng: random.Random, stem: str, right: str, wrong: list[str]) -> dict:
    choices = [right] + wrong
    rng.shuffle(choices)
    return {"input": f"{stem}\n{_options(choices)}", "target": f"({LETTERS[choices.index(right)]})"}


def boolean_expressions(rng):
    ops = ["True", "False"]
    a, b, c = (rng.choice(ops) for _ in range(3))
    op1, op2 = rng.choice(["and", "or"]), rng.choice(["and", "or"])
    neg = rng.random() < 0.5
    expr = f"{'not ' if neg else ''}( {a} {op1} {b} ) {op2} {c}"
    return {"input": f"{expr} is", "target": str(eval(expr.replace("( ", "(").replace(" )", ")")))}


def multistep_arithmetic_two(rng):
    nums = [rng.randint(-9, 9) for _ in range(8)]
    o = [rng.choice("+-*") for _ in range(6)]
    left = f"({nums[0]} {o[0]} {nums[1]} {o[1]} {nums[2]} {o[2]} {nums[3]})"
    right = f"({nums[4]} {o[3]} {nums[5]} {o[4]} {nums[6]} {o[5]} {nums[7]})"
    op = rng.choice("+-*")
    return {"input": f"({left} {op} {right}) =", "target": str(eval(f"{left} {op} {right}"))}


WORDS = ["lantern", "quartz", "meadow", "falcon", "orbit", "pebble", "tundra", "violet", "harbor",
         "juniper", "ember", "nickel", "saddle", "walnut", "cobalt", "gravel"]


def word_sorting(rng):
    words = rng.sample(WORDS, rng.randint(4, 7))
    return {"input": "Sort the following words alphabetically: List: " + " ".join(words),
            "target": " ".join(sorted(words))}


def dyck_languages(rng):
    pairs = {"(": ")", "[": "]", "{": "}", "<": ">"}
    stack, seq = [], []
    for _ in range(rng.randint(4, 8)):
        if stack and rng.random() < 0.35:
            seq.append(pairs[stack.pop()])
        else:
            ch = rng.choice(list(pairs))
            stack.append(ch)
            seq.append(ch)
    if not stack:
        stack.append("(")
        seq.append("(")
    return {"input": "Complete the rest of the sequence, making sure that the parentheses are "
                     f"closed properly. Input: {' '.join(seq)}",
            "target": " ".join(pairs[ch] for ch in reversed(stack))}


def object_counting(rng):
    things = ["a chair", "a piano", "a lamp", "a violin", "a table", "a flute", "a couch", "a drum"]
    numbers = {2: "two", 3: "three", 4: "four"}
    parts, total = [], 0
    for thing in rng.sample(things, rng.randint(3, 5)):
        k = rng.choice([1, 1, 2, 3])
        total += k
        noun = thing[2:]
        parts.append(thing if k == 1 else f"{numbers[k]} {noun}s")
    text = ", ".join(parts[:-1]) + f", and {parts[-1]}"
    return {"input": f"I have {text}. How many objects do I have?", "target": str(total)}


def navigate(rng):
    steps, x, y = [], 0, 0
    for _ in range(rng.randint(3, 6)):
        k = rng.randint(1, 9)
        d = rng.choice(["forward", "backward", "left", "right"])
        dx, dy = {"forward": (0, 1), "backward": (0, -1), "left": (-1, 0), "right": (1, 0)}[d]
        x, y = x + dx * k, y + dy * k
        steps.append(f"Take {k} step{'s' if k > 1 else ''} {d}.")
    if rng.random() < 0.5:  # return to the start half the time
        if x:
            steps.append(f"Take {abs(x)} step{'s' if abs(x) > 1 else ''} {'left' if x > 0 else 'right'}.")
        if y:
            steps.append(f"Take {abs(y)} step{'s' if abs(y) > 1 else ''} {'backward' if y > 0 else 'forward'}.")
        x = y = 0
    return {"input": "If you follow these instructions, do you return to the starting point? "
                     "Always face forward. " + " ".join(steps) + "\nOptions:\n- Yes\n- No",
            "target": "Yes" if x == y == 0 else "No"}


def web_of_lies(rng):
    people = rng.sample(["Fidel", "Jerry", "Vina", "Millicent", "Raymond", "Shaunda", "Kandi"], 5)
    truth = rng.random() < 0.5
    parts = [f"{people[0]} {'tells the truth' if truth else 'lies'}."]
    for prev, cur in zip(people, people[1:]):
        says_truth = rng.random() < 0.5
        parts.append(f"{cur} says {prev} {'tells the truth' if says_truth else 'lies'}.")
        truth = truth == says_truth
    return {"input": "Question: " + " ".join(parts) + f" Does {people[-1]} tell the truth?",
            "target": "Yes" if truth else "No"}


def tracking(n):
    def make(rng):
        people = rng.sample(["Alice", "Bob", "Claire", "Dave", "Eve", "Fred", "Gertrude"], n)
        balls = rng.sample(["red ball", "blue ball", "green ball", "pink ball", "white ball",
                            "black ball", "orange ball"], n)
        holding = dict(zip(people, balls))
        swaps = []
        for _ in range(n):
            a, b = rng.sample(people, 2)
            holding[a], holding[b] = holding[b], holding[a]
            swaps.append(f"{a} and {b} swap balls")
        who = rng.choice(people)
        start = ", ".join(f"{p} has a {b}" for p, b in zip(people, balls))
        stem = (f"{', '.join(people[:-1])}, and {people[-1]} are playing a game. At the start of the "
                f"game, they are each holding a ball: {start}.\nAs the game progresses, pairs of "
                f"players trade balls. " + ". Then, ".join(swaps) + f". At the end of the game, "
                f"{who} has the")
        choices = list(balls)
        return {"input": f"{stem}\n{_options(choices)}",
                "target": f"({LETTERS[choices.index(holding[who])]})"}
    return make


def logical_deduction(n):
    def make(rng):
        birds = rng.sample(["robin", "owl", "crow", "hawk", "finch", "quail", "raven"], n)
        order = list(birds)
        rng.shuffle(order)
        ordinal = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh"]
        facts = [f"The {b} is the {ordinal[i]} from the left." for i, b in enumerate(order[:-1])]
        rng.shuffle(facts)
        k = rng.randrange(n)
        stem = (f"The following paragraphs each describe a set of {n} objects arranged in a fixed "
                f"order. On a branch, there are {n} birds: " + ", ".join(birds) + ". "
                + " ".join(facts))
        choices = [f"The {b} is the {ordinal[k]} from the left" for b in birds]
        return {"input": f"{stem}\n{_options(choices)}",
                "target": f"({LETTERS[birds.index(order[k])]})"}
    return make


def date_understanding(rng):
    day = datetime.date(2019, 1, 1) + datetime.timedelta(days=rng.randint(0, 900))
    delta = rng.choice([1, 7, 10, 30])
    answer = day + datetime.timedelta(days=delta)
    fmt = "%m/%d/%Y"
    wrong = {(answer + datetime.timedelta(days=d)).strftime(fmt) for d in (-2, -1, 1, 3, 366)}
    wrong = sorted(wrong - {answer.strftime(fmt)})[:4]
    return _mc(rng, f"Today is {day.strftime(fmt)}. What is the date {delta} day"
                    f"{'s' if delta > 1 else ''} from today in MM/DD/YYYY?",
               answer.strftime(fmt), wrong)


COLOURS = ["red", "orange", "yellow", "green", "blue", "brown", "magenta", "fuchsia", "mauve",
           "teal", "turquoise", "burgundy", "silver", "gold", "black", "grey", "purple", "pink"]


def reasoning_about_colored_objects(rng):
    things = rng.sample(["pen", "mug", "notebook", "keychain", "sunglasses", "stress ball"], 4)
    colours = rng.sample(COLOURS, 4)
    listing = ", ".join(f"a {c} {t}" for c, t in zip(colours, things))
    k = rng.randrange(4)
    choices = list(COLOURS)
    return {"input": f"On the desk, I see {listing}. What is the colour of the {things[k]}?\n"
                     f"{_options(choices)}",
            "target": f"({LETTERS[choices.index(colours[k])]})"}


def hyperbaton(rng):
    order = [["lovely", "ugly", "nice"], ["big", "little", "huge"], ["old", "new", "ancient"],
             ["round", "square", "triangular"], ["red", "green", "white"],
             ["German", "Chinese", "Brazilian"], ["wooden", "steel", "paper"], ["drinking", "hiking"]]
    cats = sorted(rng.sample(range(len(order)), 3))
    adjs = [rng.choice(order[c]) for c in cats]
    noun = rng.choice(["ship", "box", "knife", "sweater"])
    good = " ".join(adjs) + f" {noun}"
    bad_adjs = list(adjs)
    while bad_adjs == adjs:
        rng.shuffle(bad_adjs)
    bad = " ".join(bad_adjs) + f" {noun}"
    choices = [good, bad] if rng.random() < 0.5 else [bad, good]
    return {"input": "Which sentence has the correct adjective order:\n" + _options(choices),
            "target": f"({LETTERS[choices.index(good)]})"}


def penguins_in_a_table(rng):
    table = [("Louis", 7, 50, 11), ("Bernard", 5, 80, 13), ("Vincent", 9, 60, 11),
             ("Gwen", 8, 70, 15)]
    header = ("Here is a table where the first line is a header and each subsequent line is a "
              "penguin: name, age, height (cm), weight (kg) "
              + " ".join(f"{n}, {a}, {h}, {w}" for n, a, h, w in table))
    k = rng.randint(5, 8)
    count = sum(1 for _, a, _, _ in table if a > k)
    return _mc(rng, f"{header} How many penguins are more than {k} years old?",
               str(count), [str(v) for v in range(5) if v != count][:4])


def temporal_sequences(rng):
    name = rng.choice(["Emily", "Samantha", "Ashley", "Jason"])
    slots = ["5am to 6am", "6am to 8am", "8am to 11am", "11am to 1pm", "1pm to 3pm"]
    places = rng.sample(["the library", "the park", "the bakery", "the museum", "the gym"], 5)
    free = rng.randrange(len(slots))
    seen = [f"Someone saw {name} at {p} from {s}." for i, (p, s) in enumerate(zip(places, slots))
            if i != free]
    stem = (f"Today, {name} went to the beach. Between what times could they have gone?\n"
            f"We know that: {name} woke up at 5am. " + " ".join(seen)
            + " The beach was closed after 3pm.")
    return _mc(rng, stem, slots[free], [s for i, s in enumerate(slots) if i != free][:3])


WRITTEN = {
    "causal_judgement": [
        ("How would a typical person answer each of the following questions about causation?\n"
         "A gardener forgot to close the greenhouse window, and that night a frost killed the "
         "seedlings. Did the gardener cause the seedlings to die?\nOptions:\n- Yes\n- No", "Yes"),
        ("How would a typical person answer each of the following questions about causation?\n"
         "Two friends each pressed a doorbell at the same moment and the bell rang once. The bell "
         "would have rung if either had pressed it. Did the first friend cause the bell to ring?"
         "\nOptions:\n- Yes\n- No", "No"),
        ("How would a typical person answer each of the following questions about causation?\n"
         "A driver ran a red light on purpose and hit a parked scooter. Did the driver "
         "intentionally damage the scooter?\nOptions:\n- Yes\n- No", "No"),
    ],
    "disambiguation_qa": [
        ("In the following sentences, explain the antecedent of the pronoun (which thing the "
         "pronoun refers to), or state that it is ambiguous.\nSentence: The nurse thanked the "
         "porter because he carried her bags.\nOptions:\n(A) The porter carried the bags\n(B) The "
         "nurse carried the bags\n(C) Ambiguous", "(A)"),
        ("In the following sentences, explain the antecedent of the pronoun (which thing the "
         "pronoun refers to), or state that it is ambiguous.\nSentence: The chef told the waiter "
         "that they were late.\nOptions:\n(A) The chef was late\n(B) The waiter was late\n"
         "(C) Ambiguous", "(C)"),
        ("In the following sentences, explain the antecedent of the pronoun (which thing the "
         "pronoun refers to), or state that it is ambiguous.\nSentence: The pilot called the "
         "mechanic because she needed the engine checked.\nOptions:\n(A) The pilot needed the "
         "engine checked\n(B) The mechanic needed the engine checked\n(C) Ambiguous", "(A)"),
    ],
    "formal_fallacies": [
        ("\"Every cousin of Ann is a sister of Beth. Carla is a cousin of Ann. Therefore, Carla is "
         "a sister of Beth.\"\nIs the argument, given the explicitly stated premises, deductively "
         "valid or invalid?\nOptions:\n- valid\n- invalid", "valid"),
        ("\"Some fans of the club are students. Dana is a student. Therefore, Dana is a fan of the "
         "club.\"\nIs the argument, given the explicitly stated premises, deductively valid or "
         "invalid?\nOptions:\n- valid\n- invalid", "invalid"),
        ("\"No ingredient of the soap is an ingredient of the lotion. Oil is an ingredient of the "
         "soap. Therefore, oil is not an ingredient of the lotion.\"\nIs the argument, given the "
         "explicitly stated premises, deductively valid or invalid?\nOptions:\n- valid\n- invalid",
         "valid"),
    ],
    "geometric_shapes": [
        ("This SVG path element <path d=\"M 10.00,10.00 L 40.00,10.00 L 40.00,40.00 L 10.00,40.00 "
         "L 10.00,10.00\"/> draws a\nOptions:\n(A) circle\n(B) heptagon\n(C) hexagon\n(D) kite\n"
         "(E) line\n(F) octagon\n(G) pentagon\n(H) rectangle\n(I) sector\n(J) triangle", "(H)"),
        ("This SVG path element <path d=\"M 5.00,5.00 L 30.00,5.00 L 17.00,28.00 L 5.00,5.00\"/> "
         "draws a\nOptions:\n(A) circle\n(B) heptagon\n(C) hexagon\n(D) kite\n(E) line\n"
         "(F) octagon\n(G) pentagon\n(H) rectangle\n(I) sector\n(J) triangle", "(J)"),
        ("This SVG path element <path d=\"M 12.00,3.00 L 48.00,61.00\"/> draws a\nOptions:\n"
         "(A) circle\n(B) heptagon\n(C) hexagon\n(D) kite\n(E) line\n(F) octagon\n(G) pentagon\n"
         "(H) rectangle\n(I) sector\n(J) triangle", "(E)"),
    ],
    "movie_recommendation": [
        ("Find a movie similar to The Silent Harbor, Midnight Express Line, Paper Moons, The Long "
         "Orchard:\nOptions:\n(A) Harbor Lights\n(B) Cartoon Capers 3\n(C) Robot Dance Party\n"
         "(D) Snack Attack", "(A)"),
        ("Find a movie similar to Star Drifters, Orbit Nine, The Red Planet Run, Galaxy Knights:\n"
         "Options:\n(A) The Quiet Bakery\n(B) Nebula Riders\n(C) Garden Tales\n(D) A Country "
         "Wedding", "(B)"),
        ("Find a movie similar to Laugh Track, The Wedding Mix-Up, Office Party, Uncle Pete:\n"
         "Options:\n(A) Deep Space Siege\n(B) Iron Fortress\n(C) The Holiday Swap\n(D) Dark Tide",
         "(C)"),
    ],
    "ruin_names": [
        ("Which of the following is a humorous edit of this artist or movie name: 'the rolling "
         "stones'?\nOptions:\n(A) the rolling scones\n(B) the rolling stonesz\n(C) tthe rolling "
         "stones\n(D) the rolling stone", "(A)"),
        ("Which of the following is a humorous edit of this artist or movie name: 'jurassic "
         "park'?\nOptions:\n(A) jurassic pork\n(B) jurassic parkk\n(C) jurasic park\n(D) jurassic "
         "par", "(A)"),
        ("Which of the following is a humorous edit of this artist or movie name: 'star wars'?\n"
         "Options:\n(A) star warz\n(B) stair wars\n(C) sstar wars\n(D) star war", "(B)"),
    ],
    "salient_translation_error_detection": [
        ("The following translations from German to English contain a particular error. That "
         "error will be one of the following types: Named Entities, Numerical Values, Modifiers or "
         "Adjectives, Negation or Antonyms, Facts, Dropped Content. Please identify that error.  "
         "Source: Die Brücke wurde im Jahr 1890 eröffnet.\nTranslation: The bridge was opened in "
         "1980.\nThe translation contains an error pertaining to\nOptions:\n(A) Modifiers or "
         "Adjectives\n(B) Numerical Values\n(C) Negation or Antonyms\n(D) Named Entities\n"
         "(E) Dropped Content\n(F) Facts", "(B)"),
        ("The following translations from German to English contain a particular error. That "
         "error will be one of the following types: Named Entities, Numerical Values, Modifiers or "
         "Adjectives, Negation or Antonyms, Facts, Dropped Content. Please identify that error.  "
         "Source: Hamburg ist eine große Stadt im Norden.\nTranslation: Bremen is a large city in "
         "the north.\nThe translation contains an error pertaining to\nOptions:\n(A) Modifiers or "
         "Adjectives\n(B) Numerical Values\n(C) Negation or Antonyms\n(D) Named Entities\n"
         "(E) Dropped Content\n(F) Facts", "(D)"),
        ("The following translations from German to English contain a particular error. That "
         "error will be one of the following types: Named Entities, Numerical Values, Modifiers or "
         "Adjectives, Negation or Antonyms, Facts, Dropped Content. Please identify that error.  "
         "Source: Das Museum ist nicht geöffnet.\nTranslation: The museum is open.\nThe "
         "translation contains an error pertaining to\nOptions:\n(A) Modifiers or Adjectives\n"
         "(B) Numerical Values\n(C) Negation or Antonyms\n(D) Named Entities\n(E) Dropped Content\n"
         "(F) Facts", "(C)"),
    ],
    "snarks": [
        ("Which statement is sarcastic?\nOptions:\n(A) Oh great, another Monday meeting that could "
         "have been an email\n(B) Another Monday meeting is on the calendar", "(A)"),
        ("Which statement is sarcastic?\nOptions:\n(A) The train was late again this morning\n"
         "(B) I just love it when the train is late again, best part of my day", "(B)"),
        ("Which statement is sarcastic?\nOptions:\n(A) Wow, you finished the whole puzzle in only "
         "three years\n(B) You finished the whole puzzle in three hours", "(A)"),
    ],
    "sports_understanding": [
        ("Is the following sentence plausible? \"The goalkeeper caught the ball in the penalty "
         "area.\"", "yes"),
        ("Is the following sentence plausible? \"The tennis player scored a touchdown in the "
         "third set.\"", "no"),
        ("Is the following sentence plausible? \"The striker headed the ball into the net.\"",
         "yes"),
    ],
}

GENERATED = {
    "boolean_expressions": boolean_expressions, "date_understanding": date_understanding,
    "dyck_languages": dyck_languages, "hyperbaton": hyperbaton,
    "logical_deduction_five_objects": logical_deduction(5),
    "logical_deduction_seven_objects": logical_deduction(7),
    "logical_deduction_three_objects": logical_deduction(3),
    "multistep_arithmetic_two": multistep_arithmetic_two, "navigate": navigate,
    "object_counting": object_counting, "penguins_in_a_table": penguins_in_a_table,
    "reasoning_about_colored_objects": reasoning_about_colored_objects,
    "temporal_sequences": temporal_sequences,
    "tracking_shuffled_objects_five_objects": tracking(5),
    "tracking_shuffled_objects_seven_objects": tracking(7),
    "tracking_shuffled_objects_three_objects": tracking(3),
    "web_of_lies": web_of_lies, "word_sorting": word_sorting,
}


def bbh_items(seed: int, per_task: int = 3) -> dict[str, list[dict]]:
    """{subtask: [{input, target}]}, all 27 subtasks, `per_task` items each (written ones: 3)."""
    out = {}
    for task in sorted(set(GENERATED) | set(WRITTEN)):
        if task in WRITTEN:
            out[task] = [{"input": i, "target": t} for i, t in WRITTEN[task][:per_task]]
            continue
        rng = random.Random(f"{seed}:{task}")
        rows, seen = [], set()
        while len(rows) < per_task:
            row = GENERATED[task](rng)
            if row["input"] not in seen:
                seen.add(row["input"])
                rows.append(row)
        out[task] = rows
    return out
