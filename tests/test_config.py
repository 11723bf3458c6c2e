import pytest

from refsd_trt.config import RunConfig, load_config


def test_toml_and_yaml_give_the_same_config(tmp_path):
    (tmp_path / "a.toml").write_text('preset = "lite"\nstrength = 0.5\n[attributes]\nage = "elderly"\n')
    (tmp_path / "a.yaml").write_text("preset: lite\nstrength: 0.5\nattributes: {age: elderly}\n")
    a, b = load_config(tmp_path / "a.toml"), load_config(tmp_path / "a.yaml")
    assert a == b and a.strength == 0.5 and a.attributes == {"age": "elderly"}


def test_flags_override_the_file_only_where_given(tmp_path):
    (tmp_path / "c.toml").write_text("seed = 3\nbatch_size = 2\n")
    cfg = load_config(tmp_path / "c.toml").merged({"seed": 9, "batch_size": None})
    assert (cfg.seed, cfg.batch_size) == (9, 2)


@pytest.mark.parametrize("text, message", [
    ("strength = 1.5", "strength must be in"),
    ("colour = 1", "unknown configuration key"),
    ("backend = 'vulkan'", "backend must be one of"),
    ("strength = ", "not valid TOML"),
])
def test_bad_config_names_the_file_and_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_defaults_follow_the_papers():
    assert RunConfig().strength == 0.6  # Zwick et al.: βd = 0.6
