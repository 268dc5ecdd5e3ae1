"""The stand-ins' text: small, seeded, made-up instruction rows and benchmark items.

Nothing here is copied from the real datasets. Rows are generated from a handful of templates
(arithmetic, sorting, small Python functions, facts, Flan-style entailment and QA, chain of
thought) with a seeded `random.Random`, so every build writes the same rows. The same text also
trains the stand-in tokenizer (`rehearsal.model`), so its vocabulary covers what the study feeds it.
"""
from __future__ import annotations

import random

# ---------------------------------------------------------------- building blocks

NAMES = ["Amira", "Bao", "Carmen", "Dmitri", "Elif", "Femi", "Greta", "Hiro", "Ines", "Jonas",
         "Kofi", "Lena", "Mateo", "Nadia", "Omar", "Priya"]
ITEMS = [("apple", "apples"), ("marble", "marbles"), ("pencil", "pencils"), ("sticker", "stickers"),
         ("cookie", "cookies"), ("book", "books"), ("shell", "shells"), ("card", "cards")]
CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"), ("Peru", "Lima"),
            ("Canada", "Ottawa"), ("Egypt", "Cairo"), ("Norway", "Oslo"), ("Vietnam", "Hanoi"),
            ("Chile", "Santiago"), ("Poland", "Warsaw"), ("Ghana", "Accra"), ("Nepal", "Kathmandu")]
PLANETS = ["Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"]
DEFINITIONS = {
    "thermometer": "A thermometer is an instrument that measures temperature.",
    "glacier": "A glacier is a slowly moving mass of ice formed from compacted snow.",
    "compiler": "A compiler is a program that translates source code into machine code.",
    "photosynthesis": "Photosynthesis is the process by which plants turn light, water and "
                      "carbon dioxide into sugar and oxygen.",
    "budget": "A budget is a plan for how money will be earned and spent over a period.",
    "metaphor": "A metaphor is a figure of speech that describes one thing as if it were another.",
}
FRENCH = {"water": "eau", "house": "maison", "book": "livre", "cat": "chat", "bread": "pain",
          "friend": "ami", "tree": "arbre", "sun": "soleil"}
GOOD = ["wonderful", "friendly", "delicious", "quick", "helpful", "excellent"]
BAD = ["cold", "rude", "bland", "slow", "noisy", "disappointing"]

# Small Python functions: (name, signature, one-line description, body lines).
FUNCTIONS = [
    ("sum_of_squares", "xs", "the sum of the squares of a list of numbers",
     ["total = 0", "for x in xs:", "    total += x * x", "return total"]),
    ("count_evens", "xs", "how many numbers in a list are even",
     ["count = 0", "for x in xs:", "    if x % 2 == 0:", "        count += 1", "return count"]),
    ("is_palindrome", "text", "whether a string reads the same forwards and backwards",
     ["cleaned = text.lower().replace(' ', '')", "return cleaned == cleaned[::-1]"]),
    ("factorial", "n", "the factorial of a non-negative integer n",
     ["result = 1", "for k in range(2, n + 1):", "    result *= k", "return result"]),
    ("largest", "xs", "the largest number in a non-empty list",
     ["best = xs[0]", "for x in xs[1:]:", "    if x > best:", "        best = x", "return best"]),
    ("word_lengths", "sentence", "a list with the length of each word in a sentence",
     ["return [len(word) for word in sentence.split()]"]),
]


def _python_block(name: str, arg: str, body: list[str]) -> str:
    lines = [f"def {name}({arg}):"] + ["    " + line for line in body]
    return "```python\n" + "\n".join(lines) + "\n```"


# ---------------------------------------------------------------- instruction tasks

def instruction_rows(n: int, seed: int) -> list[dict]:
    """`n` Alpaca-style {instruction, input, output} rows from ten seeded templates."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        kind = i % 10
        if kind == 0:
            a, b = rng.randint(11, 99), rng.randint(11, 99)
            rows.append({"instruction": f"Add {a} and {b}.", "input": "",
                         "output": f"{a} + {b} = {a + b}."})
        elif kind == 1:
            xs = rng.sample(range(1, 100), 5)
            rows.append({"instruction": "Sort the following numbers in ascending order.",
                         "input": ", ".join(map(str, xs)),
                         "output": ", ".join(map(str, sorted(xs)))})
        elif kind == 2:
            name, arg, desc, body = FUNCTIONS[rng.randrange(len(FUNCTIONS))]
            rows.append({"instruction": f"Write a Python function `{name}` that returns {desc}.",
                         "input": "",
                         "output": f"Here is one way to write it:\n\n{_python_block(name, arg, body)}"
                                   f"\n\nThe function `{name}` takes `{arg}` and returns {desc}."})
        elif kind == 3:
            country, capital = CAPITALS[rng.randrange(len(CAPITALS))]
            rows.append({"instruction": f"What is the capital of {country}?", "input": "",
                         "output": f"The capital of {country} is {capital}."})
        elif kind == 4:
            positive = rng.random() < 0.5
            words = GOOD if positive else BAD
            a, b = rng.sample(words, 2)
            rows.append({"instruction": "Classify the sentiment of the review as positive or negative.",
                         "input": f"The service was {a} and the meal was {b}.",
                         "output": "Positive" if positive else "Negative"})
        elif kind == 5:
            word = rng.choice(sorted(FRENCH))
            rows.append({"instruction": "Translate the word into French.", "input": word,
                         "output": f"The French word for \"{word}\" is \"{FRENCH[word]}\"."})
        elif kind == 6:
            thing = rng.choice(sorted(DEFINITIONS))
            rows.append({"instruction": f"Explain what a {thing} is in one sentence.", "input": "",
                         "output": DEFINITIONS[thing]})
        elif kind == 7:
            name = rng.choice(NAMES)
            one, many = rng.choice(ITEMS)
            a, b = rng.randint(3, 40), rng.randint(2, 9)
            rows.append({"instruction": f"{name} has {a} {many} and gets {b} more every day for "
                                        f"3 days. How many {many} does {name} have then?",
                         "input": "",
                         "output": f"{name} gets {b} x 3 = {3 * b} more {many}, so {name} has "
                                   f"{a} + {3 * b} = {a + 3 * b} {many}."})
        elif kind == 8:
            word = rng.choice(["river", "planet", "lantern", "harbor", "orchard", "compass"])
            rows.append({"instruction": "Reverse the letters of the word.", "input": word,
                         "output": word[::-1]})
        else:
            k = rng.randint(1, 8)
            rows.append({"instruction": f"Which planet is number {k} counting from the Sun?",
                         "input": "", "output": f"Planet number {k} from the Sun is {PLANETS[k - 1]}."})
    return rows


def flan_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """`n` Flan-v2-style (prompt, answer) pairs: entailment, QA, chain of thought, rewriting."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        kind = i % 5
        name = rng.choice(NAMES)
        if kind == 0:
            one, many = rng.choice(ITEMS)
            k = rng.randint(2, 9)
            entailed = rng.random() < 0.5
            hyp = f"{name} has some {many}." if entailed else f"{name} has no {many}."
            pairs.append((f"Premise: {name} is holding {k} {many}.\nHypothesis: {hyp}\n"
                          "Does the premise entail the hypothesis?\nOPTIONS:\n- yes\n"
                          "- it is not possible to tell\n- no", "yes" if entailed else "no"))
        elif kind == 1:
            country, capital = rng.choice(CAPITALS)
            pairs.append((f"Answer the following question: which city is the capital of {country}?",
                          capital))
        elif kind == 2:
            a, b, c = rng.randint(2, 9), rng.randint(2, 9), rng.randint(1, 20)
            pairs.append((f"Q: A box holds {a} rows of {b} eggs and {c} loose eggs. How many eggs "
                          "are there? Let's think step by step.",
                          f"There are {a} x {b} = {a * b} eggs in rows. Adding the {c} loose eggs "
                          f"gives {a * b} + {c} = {a * b + c}. The answer is {a * b + c}."))
        elif kind == 3:
            word = rng.choice(sorted(FRENCH))
            pairs.append((f"Translate \"The {word} is here.\" to French.",
                          f"Le mot \"{word}\" se dit \"{FRENCH[word]}\" en français."))
        else:
            a, b = rng.sample(GOOD, 2)
            pairs.append((f"Write a short sentence about a {a} and {b} neighbour named {name}.",
                          f"{name} is a {a} neighbour who is always {b}."))
    return pairs


def chats(n: int, seed: int) -> list[list[dict]]:
    """`n` conversations in the Tulu format: lists of {role, content} messages."""
    rows = instruction_rows(n, seed)
    out = []
    for i, row in enumerate(rows):
        user = row["instruction"] + (f"\n\n{row['input']}" if row["input"] else "")
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
        if i % 7 == 3:  # a multi-turn conversation (ShareGPT-like)
            msgs += [{"role": "user", "content": "Thanks! Can you say that more briefly?"},
                     {"role": "assistant", "content": row["output"].split("\n")[0]}]
        if i % 11 == 5:  # a system turn, as some Tulu sources have
            msgs.insert(0, {"role": "system", "content": "You are a helpful assistant."})
        out.append(msgs)
    return out


def alpaca_text(row: dict) -> str:
    """The Alpaca prompt template, as the `text` column of alpaca-gpt4 holds it."""
    if row["input"]:
        head = ("Below is an instruction that describes a task, paired with an input that provides "
                "further context. Write a response that appropriately completes the request.\n\n"
                f"### Instruction:\n{row['instruction']}\n\n### Input:\n{row['input']}\n\n")
    else:
        head = ("Below is an instruction that describes a task. Write a response that "
                f"appropriately completes the request.\n\n### Instruction:\n{row['instruction']}\n\n")
    return head + f"### Response:\n{row['output']}"


# ---------------------------------------------------------------- benchmark items

def mmlu_items(seed: int) -> dict[str, list[dict]]:
    """{split: rows} in cais/mmlu's schema: four subjects, 5 dev shots each, test and validation."""
    rng = random.Random(seed)
    per_split = {"dev": 5, "validation": 2, "test": 4}

    def arithmetic():
        a, b = rng.randint(3, 19), rng.randint(3, 19)
        right = a * b
        wrong = rng.sample([right + d for d in (-3, -2, -1, 1, 2, 3, 10)], 3)
        return f"What is {a} multiplied by {b}?", right, wrong

    def geography():
        country, capital = rng.choice(CAPITALS)
        wrong = rng.sample([c for _, c in CAPITALS if c != capital], 3)
        return f"Which city is the capital of {country}?", capital, wrong

    def computer_science():
        xs = rng.sample(range(1, 9), rng.randint(2, 5))
        q = f"In Python, what does len({xs}) evaluate to?"
        return q, len(xs), rng.sample([v for v in range(0, 9) if v != len(xs)], 3)

    def astronomy():
        k = rng.randint(1, 8)
        return (f"Which planet is the number {k} planet from the Sun?", PLANETS[k - 1],
                rng.sample([p for p in PLANETS if p != PLANETS[k - 1]], 3))

    subjects = {"elementary_mathematics": arithmetic, "high_school_geography": geography,
                "high_school_computer_science": computer_science, "astronomy": astronomy}
    out = {split: [] for split in per_split}
    for split, n in per_split.items():
        for subject, make in subjects.items():
            seen = set()
            while len([r for r in out[split] if r["subject"] == subject]) < n:
                question, right, wrong = make()
                if question in seen:
                    continue
                seen.add(question)
                choices = [str(c) for c in wrong] + [str(right)]
                rng.shuffle(choices)
                out[split].append({"question": question, "subject": subject, "choices": choices,
                                   "answer": choices.index(str(right))})
    return out


def gsm_items(seed: int) -> dict[str, list[dict]]:
    """{split: rows} in openai/gsm8k's schema, with calculator annotations and '#### N'."""
    rng = random.Random(seed)

    def problem():
        name = rng.choice(NAMES)
        one, many = rng.choice(ITEMS)
        kind = rng.randrange(3)
        if kind == 0:
            a, b = rng.randint(10, 60), rng.randint(2, 6)
            q = (f"{name} collected {a} {many} on Monday and {b} times as many on Tuesday. "
                 f"How many {many} did {name} collect in total?")
            ans = (f"On Tuesday {name} collected {a}*{b} = <<{a}*{b}={a * b}>>{a * b} {many}.\n"
                   f"In total {name} collected {a}+{a * b} = <<{a}+{a * b}={a + a * b}>>{a + a * b} {many}.\n"
                   f"#### {a + a * b}")
        elif kind == 1:
            a, b, c = rng.randint(20, 90), rng.randint(2, 9), rng.randint(2, 9)
            left = a - b * c
            q = (f"{name} had {a} dollars and bought {b} {many} that cost {c} dollars each. "
                 f"How many dollars does {name} have left?")
            ans = (f"The {many} cost {b}*{c} = <<{b}*{c}={b * c}>>{b * c} dollars.\n"
                   f"{name} has {a}-{b * c} = <<{a}-{b * c}={left}>>{left} dollars left.\n"
                   f"#### {left}")
        else:
            a, b = rng.randint(2, 8), rng.randint(3, 12)
            total = a * b * 7
            q = (f"A shop sells {a} boxes of {many} every day, and each box has {b} {many}. "
                 f"How many {many} does the shop sell in a week?")
            ans = (f"Each day the shop sells {a}*{b} = <<{a}*{b}={a * b}>>{a * b} {many}.\n"
                   f"In a week it sells {a * b}*7 = <<{a * b}*7={total}>>{total} {many}.\n"
                   f"#### {total}")
        return {"question": q, "answer": ans}

    return {"train": [problem() for _ in range(8)], "test": [problem() for _ in range(12)]}


def humaneval_items() -> list[dict]:
    """HumanEval-style problems (made up here) whose canonical solutions pass their tests."""
    specs = [
        ("add_pairs", "from typing import List\n\n\ndef add_pairs(xs: List[int], ys: List[int]) -> List[int]:\n"
         "    \"\"\" Return the element-wise sums of two lists of equal length.\n"
         "    >>> add_pairs([1, 2], [10, 20])\n    [11, 22]\n    \"\"\"\n",
         "    return [x + y for x, y in zip(xs, ys)]\n",
         ["candidate([], []) == []", "candidate([1, 2], [10, 20]) == [11, 22]",
          "candidate([-1, 5, 0], [1, -5, 7]) == [0, 0, 7]"]),
        ("count_vowels", "\n\ndef count_vowels(text: str) -> int:\n"
         "    \"\"\" Count the vowels (a, e, i, o, u, either case) in text.\n"
         "    >>> count_vowels('Banana')\n    3\n    \"\"\"\n",
         "    return sum(1 for ch in text.lower() if ch in 'aeiou')\n",
         ["candidate('') == 0", "candidate('Banana') == 3", "candidate('rhythm') == 0",
          "candidate('AEIOU xyz') == 5"]),
        ("second_largest", "from typing import List, Optional\n\n\n"
         "def second_largest(xs: List[int]) -> Optional[int]:\n"
         "    \"\"\" Return the second largest distinct value, or None if there is none.\n"
         "    >>> second_largest([4, 1, 4, 3])\n    3\n    >>> second_largest([2, 2])\n    \"\"\"\n",
         "    values = sorted(set(xs))\n    if len(values) < 2:\n        return None\n"
         "    return values[-2]\n",
         ["candidate([4, 1, 4, 3]) == 3", "candidate([2, 2]) is None", "candidate([]) is None",
          "candidate([-5, -1, -3]) == -3"]),
        ("run_lengths", "from typing import List, Tuple\n\n\n"
         "def run_lengths(text: str) -> List[Tuple[str, int]]:\n"
         "    \"\"\" Compress text into (character, run length) pairs.\n"
         "    >>> run_lengths('aaabcc')\n    [('a', 3), ('b', 1), ('c', 2)]\n    \"\"\"\n",
         "    out = []\n    for ch in text:\n        if out and out[-1][0] == ch:\n"
         "            out[-1] = (ch, out[-1][1] + 1)\n        else:\n            out.append((ch, 1))\n"
         "    return out\n",
         ["candidate('') == []", "candidate('aaabcc') == [('a', 3), ('b', 1), ('c', 2)]",
          "candidate('xyz') == [('x', 1), ('y', 1), ('z', 1)]"]),
        ("digit_sum", "\n\ndef digit_sum(n: int) -> int:\n"
         "    \"\"\" Return the sum of the decimal digits of n (ignoring its sign).\n"
         "    >>> digit_sum(1234)\n    10\n    >>> digit_sum(-56)\n    11\n    \"\"\"\n",
         "    return sum(int(d) for d in str(abs(n)))\n",
         ["candidate(0) == 0", "candidate(1234) == 10", "candidate(-56) == 11",
          "candidate(99999) == 45"]),
        ("title_words", "\n\ndef title_words(sentence: str) -> str:\n"
         "    \"\"\" Capitalise the first letter of every word separated by single spaces.\n"
         "    >>> title_words('hello big world')\n    'Hello Big World'\n    \"\"\"\n",
         "    return ' '.join(w[:1].upper() + w[1:] for w in sentence.split(' '))\n",
         ["candidate('hello big world') == 'Hello Big World'", "candidate('a') == 'A'",
          "candidate('x2 y') == 'X2 Y'"]),
        ("running_max", "from typing import List\n\n\ndef running_max(xs: List[int]) -> List[int]:\n"
         "    \"\"\" Return the maximum seen so far at each position.\n"
         "    >>> running_max([1, 3, 2, 5, 4])\n    [1, 3, 3, 5, 5]\n    \"\"\"\n",
         "    out = []\n    best = None\n    for x in xs:\n"
         "        best = x if best is None or x > best else best\n        out.append(best)\n"
         "    return out\n",
         ["candidate([]) == []", "candidate([1, 3, 2, 5, 4]) == [1, 3, 3, 5, 5]",
          "candidate([-2, -7]) == [-2, -2]"]),
        ("is_balanced", "\n\ndef is_balanced(brackets: str) -> bool:\n"
         "    \"\"\" brackets is a string of '(' and ')'. Return True if every '(' is closed.\n"
         "    >>> is_balanced('(()())')\n    True\n    >>> is_balanced('())(')\n    False\n    \"\"\"\n",
         "    depth = 0\n    for ch in brackets:\n        depth += 1 if ch == '(' else -1\n"
         "        if depth < 0:\n            return False\n    return depth == 0\n",
         ["candidate('') is True", "candidate('(()())') is True", "candidate('())(') is False",
          "candidate('(((') is False"]),
    ]
    items = []
    for i, (entry, prompt, solution, asserts) in enumerate(specs):
        test = ("\n\nMETADATA = {\n    'author': 'rehearsal',\n    'dataset': 'test'\n}\n\n\n"
                "def check(candidate):\n" + "".join(f"    assert {a}\n" for a in asserts))
        items.append({"task_id": f"HumanEval/{i}", "prompt": prompt, "canonical_solution": solution,
                      "test": test, "entry_point": entry})
    return items


def tydiqa_items() -> dict[str, list[dict]]:
    """{split: rows} in TyDiQA GoldP's schema (secondary_task), six languages, made-up passages."""
    # (language, title, context, [(question, answer)]): answers are spans of the context.
    passages = [
        ("english", "Lake Brenna", "Lake Brenna is a freshwater lake in the northern hills. It is "
         "about 12 kilometres long and its deepest point is 85 metres. The town of Orvik lies on "
         "its eastern shore.", [("How long is Lake Brenna?", "about 12 kilometres"),
                                ("Which town lies on the eastern shore of Lake Brenna?", "Orvik"),
                                ("How deep is Lake Brenna at its deepest point?", "85 metres"),
                                ("What kind of lake is Lake Brenna?", "freshwater")]),
        ("finnish", "Kalliosaari", "Kalliosaari on pieni saari Saimaalla. Saarella asuu noin 40 "
         "ihmistä, ja sinne pääsee lautalla kesäisin. Saaren kirkko rakennettiin vuonna 1854.",
         [("Kuinka monta ihmistä Kalliosaarella asuu?", "noin 40"),
          ("Milloin Kalliosaaren kirkko rakennettiin?", "vuonna 1854"),
          ("Millä Kalliosaarelle pääsee kesäisin?", "lautalla"),
          ("Missä järvessä Kalliosaari on?", "Saimaalla")]),
        ("indonesian", "Sungai Merah", "Sungai Merah adalah sungai di pulau Sumbara. Panjang sungai "
         "ini sekitar 140 kilometer. Kota Lembaya terletak di muara sungai tersebut.",
         [("Berapa panjang Sungai Merah?", "sekitar 140 kilometer"),
          ("Kota apa yang terletak di muara Sungai Merah?", "Lembaya"),
          ("Di pulau mana Sungai Merah berada?", "Sumbara"),
          ("Apa nama sungai di pulau Sumbara?", "Sungai Merah")]),
        ("swahili", "Mlima Kerefu", "Mlima Kerefu uko katika mkoa wa kaskazini. Urefu wake ni mita "
         "2,300 juu ya usawa wa bahari. Wakulima hulima kahawa kwenye miteremko yake.",
         [("Mlima Kerefu una urefu gani?", "mita 2,300"),
          ("Wakulima hulima nini kwenye miteremko ya Mlima Kerefu?", "kahawa"),
          ("Mlima Kerefu uko katika mkoa gani?", "mkoa wa kaskazini"),
          ("Nani hulima kahawa kwenye miteremko?", "Wakulima")]),
        ("russian", "Берёзовка", "Берёзовка — небольшая река в Сибири. Её длина составляет 96 "
         "километров. На берегу реки стоит деревня Малиновка, основанная в 1702 году.",
         [("Какова длина реки Берёзовка?", "96 километров"),
          ("Какая деревня стоит на берегу Берёзовки?", "Малиновка"),
          ("Когда была основана деревня Малиновка?", "в 1702 году"),
          ("Где течёт река Берёзовка?", "в Сибири")]),
        ("arabic", "واحة النخيل", "واحة النخيل قرية صغيرة في الصحراء. يعيش فيها حوالي 600 شخص. "
         "تشتهر الواحة بزراعة التمر منذ القرن الثاني عشر.",
         [("كم عدد سكان واحة النخيل؟", "حوالي 600 شخص"),
          ("بماذا تشتهر واحة النخيل؟", "بزراعة التمر"),
          ("أين تقع واحة النخيل؟", "في الصحراء"),
          ("منذ متى تشتهر الواحة بزراعة التمر؟", "منذ القرن الثاني عشر")]),
    ]
    out = {"train": [], "validation": []}
    for p, (lang, title, context, qas) in enumerate(passages):
        for q, (question, answer) in enumerate(qas):
            start = context.find(answer)
            if start < 0:
                raise AssertionError(f"tydiqa stand-in: {answer!r} is not in the {lang} passage")
            split = "train" if q == 0 else "validation"
            # GoldP ids: "<language>-<document id>-<index>".
            out[split].append({"id": f"{lang}-{7300000000000000000 + 7919 * (10 * p + q)}-{q}",
                               "title": title, "context": context, "question": question,
                               "answers": {"text": [answer], "answer_start": [start]}})
    return out
