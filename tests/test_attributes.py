import pytest

from refsd_trt.attributes import CHOICES, parse_attributes, person_prompt, person_seed


def test_person_seed_is_stable_and_distinct():
    assert person_seed(0, "abc", 0) == person_seed(0, "abc", 0)
    seeds = {person_seed(0, "abc", i) for i in range(100)} | {person_seed(1, "abc", 0), person_seed(0, "abd", 0)}
    assert len(seeds) == 102
    assert all(0 <= s < 2**31 for s in seeds)


def test_prompt_uses_given_attributes_and_samples_the_rest_reproducibly():
    a = person_prompt(7, "img", 2, {"gender": "woman", "age": "elderly"})
    b = person_prompt(7, "img", 2, {"gender": "woman", "age": "elderly"})
    assert a == b
    assert a.attributes["gender"] == "woman" and "elderly woman" in a.prompt
    assert a.attributes["top"] in CHOICES["top"] and a.attributes["top"] in a.prompt
    # Giving one attribute does not change how the others are drawn.
    c = person_prompt(7, "img", 2)
    assert {k: v for k, v in c.attributes.items() if k not in ("gender", "age")} == {
        k: v for k, v in a.attributes.items() if k not in ("gender", "age")}


def test_sampling_covers_the_choices():
    genders = {person_prompt(0, "x", i).attributes["gender"] for i in range(200)}
    assert genders == set(CHOICES["gender"])


def test_parse_attributes_and_errors():
    assert parse_attributes("age=elderly, gender=woman") == {"age": "elderly", "gender": "woman"}
    with pytest.raises(ValueError, match="key=value"):
        parse_attributes("age")
    with pytest.raises(ValueError, match="unknown attribute"):
        parse_attributes("hair=red")
    with pytest.raises(ValueError, match="not an attribute"):
        person_prompt(0, "x", 0, template="a {hair} person")


def test_prompts_say_an_before_a_vowel_only_where_an_attribute_was_filled_in():
    from refsd_trt.attributes import person_prompt

    elderly = person_prompt(0, "k", 0, {"age": "elderly", "gender": "man", "top_color": "orange"})
    assert elderly.prompt.startswith("a photo of an elderly man wearing an orange ")
    young = person_prompt(0, "k", 0, {"age": "young adult"}, template="A {age} in a uniform")
    assert young.prompt == "A young adult in a uniform"  # the template's "a uniform" is not touched
    assert person_prompt(0, "k", 0, {"age": "adult"}, template="A {age}").prompt == "An adult"
