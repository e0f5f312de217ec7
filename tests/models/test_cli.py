"""The ``pyflowops`` command line: ``info`` reports, planned subcommands say which issue builds them."""

import json

import pytest

from pyflowops_models.cli import main


def test_info_lists_backends_and_models(capsys):
    assert main(["info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "cpu" in info["backends"] and info["models"] == ["raft", "gma", "decflow", "srflownet"]


@pytest.mark.parametrize("command", ["bench"])
def test_planned_commands_exit_2_and_say_so(command, capsys):
    assert main([command]) == 2
    assert "planned: issue" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error():
    with pytest.raises(SystemExit) as info:
        main(["fly"])
    assert info.value.code == 2
