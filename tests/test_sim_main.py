"""`make sim`'s command line (sim/main.py): bad arguments end with a message and a non-zero exit
before anything is simulated."""

import pytest

from sim import main as sim_main


def test_images_at_least_one(capsys):
    with pytest.raises(SystemExit) as e:
        sim_main.main(["--images", "0"])
    assert e.value.code == 2
    assert "--images must be at least 1" in capsys.readouterr().err


def test_images_past_the_fixture():
    with pytest.raises(SystemExit) as e:
        sim_main.main(["--images", "5", "--layers", "layer4.0.conv1", "--lanes", ""])
    assert "holds only 4 images" in str(e.value.code)
