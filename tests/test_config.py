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
    ("memory_budget_gb = 0", "memory_budget_gb must be positive"),
])
def test_bad_config_names_the_file_and_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_defaults_follow_the_papers():
    assert RunConfig().strength == 0.6  # Zwick et al.: βd = 0.6


# One effective configuration: RunConfig's defaults <- the preset's <- a file <- flags/arguments.

def _cli_config(*flags: str):
    from refsd_trt.cli import _run_config, build_parser

    return _run_config(build_parser().parse_args(["anonymize", "in", "-o", "out", *flags]))


def test_each_preset_states_its_guidance_in_one_place():
    from refsd_trt.methods import inpaint_settings, refsd_settings
    from refsd_trt.presets import PRESETS

    config = RunConfig()
    inpaint, refsd = config.resolved(PRESETS["inpaint"]), config.resolved(PRESETS["refsd"])
    # SDXL inpainting at 7.5 (the inpaint preset's default), refsd's refinement at RunConfig's 5.0
    # and its removal at 7.5: the settings the methods run with are the ones the config records.
    assert PRESETS["inpaint"].defaults == {"guidance_scale": 7.5}
    assert (inpaint.guidance_scale, inpaint_settings(inpaint).guidance_scale) == (7.5, 7.5)
    assert (refsd.guidance_scale, refsd_settings(refsd).guidance_scale) == (5.0, 5.0)
    assert (refsd.removal_guidance_scale, refsd_settings(refsd).removal_guidance_scale) == (7.5, 7.5)
    assert (inpaint.method, refsd.method) == ("inpaint", "refsd")


def test_removal_steps_are_set_apart_from_the_refinement_steps():
    from refsd_trt.methods import refsd_settings
    from refsd_trt.presets import PRESETS

    refsd = PRESETS["refsd"]
    settings = refsd_settings(RunConfig(steps=12, removal_steps=40).resolved(refsd))
    assert (settings.steps, settings.removal_steps) == (12, 40)
    settings = refsd_settings(RunConfig(steps=12).resolved(refsd))  # no longer tied to steps
    assert (settings.steps, settings.removal_steps) == (12, 30)


def test_the_users_value_beats_the_presets_default_which_beats_runconfigs(tmp_path):
    from refsd_trt.presets import PRESETS

    inpaint = PRESETS["inpaint"]
    assert RunConfig().resolved(inpaint).guidance_scale == 7.5  # preset over RunConfig's 5.0
    # A user who asks for RunConfig's own default value gets it, not the preset's.
    assert RunConfig(guidance_scale=5.0).resolved(inpaint).guidance_scale == 5.0
    (tmp_path / "run.toml").write_text('preset = "inpaint"\nguidance_scale = 6.0\nsteps = 20\n')
    from_file = load_config(tmp_path / "run.toml")
    assert from_file.resolved(inpaint).guidance_scale == 6.0
    assert from_file.merged({"guidance_scale": 9.0}).resolved(inpaint).guidance_scale == 9.0  # API arguments
    # The command line: file over preset, flags over file.
    cli = _cli_config("--config", str(tmp_path / "run.toml"), "--steps", "8")
    assert (cli.preset, cli.guidance_scale, cli.steps, cli.removal_steps) == ("inpaint", 6.0, 8, 30)
    assert _cli_config("--preset", "inpaint").guidance_scale == 7.5
    assert _cli_config("--preset", "refsd", "--steps", "8").guidance_scale == 5.0


def test_the_resume_check_compares_the_effective_config():
    from refsd_trt.presets import PRESETS

    named = _cli_config("--preset", "inpaint", "--seed", "3")
    # What the runner compares is what Anonymizer.from_preset resolves and the manifest records.
    assert named == named.resolved(PRESETS["inpaint"])
    assert named.to_dict()["guidance_scale"] == 7.5 and named.to_dict()["method"] == "inpaint"
    # No preset named: the best one present is chosen later, so its settings match any recorded.
    unnamed = _cli_config("--seed", "3").to_dict()
    assert unnamed["preset"] is None and unnamed["guidance_scale"] is None and unnamed["seed"] == 3


def test_one_feather_unit_and_validated_settings():
    assert (RunConfig().feather_px, RunConfig().dilate_px, RunConfig().crop_scale) == (6, 8, 1.1)
    with pytest.raises(ValueError, match="removal_steps must be at least 1"):
        RunConfig(removal_steps=0)
    with pytest.raises(ValueError, match="crop_scale must be at least 1"):
        RunConfig(crop_scale=0.9)


def test_presets_may_only_default_preset_settings():
    from refsd_trt.presets import Preset

    with pytest.raises(ValueError, match="seed cannot be preset defaults"):
        Preset("odd", "refsd", "a preset that fixes the seed", defaults={"seed": 3})


def test_methods_refuse_a_config_no_preset_resolved():
    from refsd_trt.methods import inpaint_settings

    with pytest.raises(ValueError, match="not resolved for a preset"):
        inpaint_settings(RunConfig())


def test_the_manifest_records_the_config_that_built_the_method(tmp_path, monkeypatch):
    import json

    import numpy as np
    from PIL import Image

    from refsd_trt.api import Anonymizer
    from refsd_trt.cli import main
    from refsd_trt.methods import inpaint_settings

    built, real = [], Anonymizer.from_preset.__func__

    def spy(cls, *args, **kwargs):
        built.append(real(cls, *args, **kwargs))
        return built[-1]

    monkeypatch.setattr(Anonymizer, "from_preset", classmethod(spy))
    (tmp_path / "in").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(
        tmp_path / "in" / "a.png")
    (tmp_path / "run.yaml").write_text("guidance_scale: 6.5\nfeather_px: 4\n")
    main(["anonymize", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--preset", "tiny", "--method",
          "inpaint", "--steps", "2", "--backend", "torch", "--device", "cpu",
          "--config", str(tmp_path / "run.yaml"), "-q"])
    record = json.loads((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[-1])
    (anonymizer,) = built
    assert record["config"] == json.loads(json.dumps(anonymizer.config.to_dict()))
    recorded = record["config"]
    assert (recorded["guidance_scale"], recorded["steps"], recorded["feather_px"]) == (6.5, 2, 4)
    assert anonymizer.method.settings == inpaint_settings(anonymizer.config)
    stage = anonymizer.method.stage.settings
    assert (stage.guidance_scale, stage.steps, anonymizer.method.settings.feather_px) == (6.5, 2, 4)
