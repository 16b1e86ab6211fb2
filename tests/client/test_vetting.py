"""A platform runs only app bundles on its operator's vetted list; the check runs before Flower unpacks a bundle."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from crossfed.client.vetted_runtime import vetted_install, write_launcher
from crossfed.client.vetting import (
    REFUSED,
    VETTED_ENV,
    BundleNotVettedError,
    VettedListError,
    add_vetted,
    check_bundle,
    read_vetted,
)
from crossfed.shared import cli

VETTED, FOREIGN = b"the bundle the operator reviewed", b"the bundle the coordinator would rather run"


@pytest.fixture
def vetted_list(tmp_path):
    path = tmp_path / "vetted-bundles.txt"
    add_vetted(path, hashlib.sha256(VETTED).hexdigest(), note="reviewed on Monday")
    return path


def test_a_vetted_bundle_passes_and_any_other_is_refused_naming_its_digest_only(vetted_list):
    assert check_bundle(VETTED, vetted_list) == hashlib.sha256(VETTED).hexdigest()
    with pytest.raises(BundleNotVettedError) as refused:
        check_bundle(FOREIGN, vetted_list)
    text = str(refused.value)
    assert text.startswith(REFUSED) and hashlib.sha256(FOREIGN).hexdigest() in text
    # The text travels to the coordinator in Flower's error reply: no path of the operator's.
    assert str(vetted_list.parent) not in text


def test_without_a_vetted_list_nothing_runs(tmp_path):
    for missing in (None, tmp_path / "no-such-list.txt"):
        with pytest.raises(BundleNotVettedError):
            check_bundle(VETTED, missing)


def test_the_list_takes_comments_and_refuses_a_malformed_line_by_file_and_line(vetted_list):
    assert add_vetted(vetted_list, hashlib.sha256(VETTED).hexdigest()) is False
    assert read_vetted(vetted_list) == {hashlib.sha256(VETTED).hexdigest()}
    with vetted_list.open("a") as handle:
        handle.write("# a comment line\n\nnot-a-digest  # typed by hand\n")
    with pytest.raises(VettedListError, match=r"vetted-bundles.txt, line 4: 'not-a-digest'"):
        read_vetted(vetted_list)


def test_flowers_install_is_never_reached_for_a_foreign_bundle(vetted_list):
    installed = []
    install = vetted_install(lambda content, **_: installed.append(content) or "app-dir", vetted_list)
    assert install(VETTED, skip_prompt=True) == "app-dir"
    with pytest.raises(BundleNotVettedError):
        install(FOREIGN, skip_prompt=True)
    assert installed == [VETTED]


def test_the_launcher_runs_flowers_clientapp_with_the_list(tmp_path, vetted_list):
    launcher = write_launcher(tmp_path / "bin", vetted_list)
    assert launcher.name == "flwr-clientapp" and os.access(launcher, os.X_OK)
    assert f"{VETTED_ENV}={vetted_list.resolve()}" in launcher.read_text()
    done = subprocess.run([str(launcher), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--runtime-api-address" in done.stdout


def test_vet_add_lists_a_reviewed_fab_once(tmp_path, capsys):
    fab, vetted = tmp_path / "app.fab", tmp_path / "vetted.txt"
    fab.write_bytes(VETTED)
    assert cli.main(["vet", "add", str(fab), "--list", str(vetted)]) == 0
    assert cli.main(["vet", "add", str(fab), "--list", str(vetted)]) == 0
    assert "already in" in capsys.readouterr().out
    assert read_vetted(vetted) == {hashlib.sha256(VETTED).hexdigest()}
    assert cli.main(["vet", "add", str(tmp_path / "missing.fab"), "--list", str(vetted)]) == 2


def test_vet_launcher_refuses_a_malformed_list_before_writing_anything(tmp_path, capsys):
    vetted = tmp_path / "vetted.txt"
    vetted.write_text("0123\n")
    assert cli.main(["vet", "launcher", "--list", str(vetted), "--bin", str(tmp_path / "bin")]) == 1
    assert "vetted.txt, line 1" in capsys.readouterr().err
    assert not (tmp_path / "bin").exists()
