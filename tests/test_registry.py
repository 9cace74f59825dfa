import pytest

from robustbench_ibn.registry import Registry, natural_key


def make() -> Registry:
    reg = Registry("widget")
    reg.add("resnet50", lambda: "r50")
    reg.add("resnet101", lambda: "r101")
    reg.add("resnet18", lambda: "r18")
    reg.add("rgb+{k}", lambda k: ("rgb", k))
    return reg


def test_natural_sort_and_fnmatch_filters():
    reg = make()
    assert reg.list() == ["resnet18", "resnet50", "resnet101", "rgb+{k}"]
    assert reg.list("resnet*") == ["resnet18", "resnet50", "resnet101"]
    assert reg.list("resnet*", exclude="*1*") == ["resnet50"]
    assert reg.list(["*18", "rgb*"]) == ["resnet18", "rgb+{k}"]
    assert sorted(["a10", "a9", "a100"], key=natural_key) == ["a9", "a10", "a100"]


def test_families_bind_the_number():
    reg = make()
    assert reg.create("rgb+50") == ("rgb", 50)
    assert reg.create("rgb+12.5") == ("rgb", 12.5)
    assert isinstance(reg.create("rgb+50")[1], int)
    assert "rgb+7" in reg and "rgb+" not in reg and "rgb+x" not in reg and "xrgb+7" not in reg
    assert reg.template_of("rgb+7") == "rgb+{k}"


def test_duplicates_raise_unless_override():
    reg = make()
    with pytest.raises(ValueError, match="already registered under the name 'resnet50'"):
        reg.add("resnet50", lambda: None)
    reg.add("resnet50", lambda: "new", override=True)
    assert reg.create("resnet50") == "new"


def test_unknown_names_suggest_the_closest():
    with pytest.raises(KeyError) as info:
        make().get("resnet05")
    assert "Unknown widget 'resnet05'" in info.value.args[0]
    assert "resnet50" in info.value.args[0]


def test_a_misspelt_family_name_suggests_the_member_or_the_family():
    reg = make()
    reg.add("adain{alpha}", lambda alpha: alpha)
    assert "Did you mean: rgb+50?" in reg.unknown_message("rbg+50")  # with the typed number: the member
    assert "Did you mean: adain1?" in reg.unknown_message("adian1")
    assert "Did you mean: adain{alpha}?" in reg.unknown_message("adian")  # without one: the family's template
    assert "Did you mean: rgb+{k}?" in reg.unknown_message("rgb")


@pytest.mark.parametrize("bad", ["", " x", "a b", "a,b", "x{a}{b}"])
def test_bad_names_rejected(bad):
    with pytest.raises(ValueError):
        Registry("widget").add(bad, lambda: None)


def test_snapshot_restores_content():
    reg = make()
    with reg.snapshot():
        reg.add("tmp", lambda: None)
        assert "tmp" in reg
    assert "tmp" not in reg
