"""manage.py createapikey and importconfig."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from collector.models import ApiKey, Node

SEED_API = {
    "54b22f56-9a84-4893-bc70-332e3b5ded66": ["0"],
    "D5C3D52E-D42C-41FF-BBFA-D3E802770EE1": ["1", "2"],
    "ce34b5ac-df85-40f0-9500-2a4a7781a6c4": ["2"],
}
SEED_NODES = {"1": "120.18.0.151", "2": "120.18.0.152:9000"}


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def seed_files(tmp_path, api=SEED_API, nodes=SEED_NODES) -> tuple[str, str]:
    api_file, node_file = tmp_path / "api.conf", tmp_path / "nodes.conf"
    api_file.write_text(json.dumps(api))
    node_file.write_text(json.dumps(nodes))
    return str(api_file), str(node_file)


def test_createapikey_prints_the_key_once_and_it_works(api, nodes):
    out, err = run("createapikey", "--name", "soc team", "--nodes", "1,2")
    key = out.strip()
    assert key.startswith("par_") and "\n" not in key
    assert key not in err
    row = ApiKey.objects.get(name="soc team")
    assert row.prefix in err
    assert sorted(n.id for n in row.nodes.all()) == [1, 2]
    assert api.get("/nodes/list", headers={"X-Api-Key": key}).json().keys() == {"1", "2"}


def test_createapikey_admin_and_all_nodes(nodes):
    run("createapikey", "--name", "boss", "--admin")
    run("createapikey", "--name", "every sensor", "--all-nodes")
    assert ApiKey.objects.get(name="boss").admin
    everywhere = ApiKey.objects.get(name="every sensor")
    assert everywhere.all_nodes and not everywhere.admin


@pytest.mark.parametrize(
    ("nodes_arg", "message"),
    [
        ("1,7", "no such node: 7"),
        ("1,x", "'x' is not a node number"),
        ("1,\u00b2", "'\u00b2' is not a node number"),
        ("2147483648", "'2147483648' is not a node number"),
    ],
)
def test_createapikey_refuses_unknown_or_bad_nodes(nodes, nodes_arg, message):
    with pytest.raises(CommandError, match=message):
        run("createapikey", "--name", "n", "--nodes", nodes_arg)
    assert not ApiKey.objects.filter(name="n").exists()


def test_importconfig_imports_the_seed_files(api, tmp_path, db):
    api_file, node_file = seed_files(tmp_path)
    out, _ = run("importconfig", "--api-file", api_file, "--node-file", node_file)
    assert {n.id: n.address for n in Node.objects.all()} == {1: "120.18.0.151:9002", 2: "120.18.0.152:9000"}
    assert "5 created, 0 updated, 0 unchanged" in out
    admin = api.get("/keys", headers={"X-Api-Key": "54b22f56-9a84-4893-bc70-332e3b5ded66"}).json()
    assert admin["54b22f56"]["nodes"] == ["0"] and admin["54b22f56"]["admin"]
    assert admin["d5c3d52e"]["nodes"] == ["1", "2"]
    assert admin["ce34b5ac"]["nodes"] == ["2"]
    # The uppercase UUID was imported in its canonical lowercase form.
    lowered = api.get("/nodes/list", headers={"X-Api-Key": "d5c3d52e-d42c-41ff-bbfa-d3e802770ee1"})
    assert lowered.json() == {"1": "120.18.0.151:9002", "2": "120.18.0.152:9000"}
    for key in SEED_API:
        assert key.lower() not in out and key not in out


def test_importconfig_is_idempotent_and_reports_updates(tmp_path, db):
    api_file, node_file = seed_files(tmp_path)
    run("importconfig", "--api-file", api_file, "--node-file", node_file)
    out, _ = run("importconfig", "--api-file", api_file, "--node-file", node_file)
    assert "0 created, 0 updated, 5 unchanged" in out
    assert ApiKey.objects.count() == 3 and Node.objects.count() == 2

    changed_api = {**SEED_API, "ce34b5ac-df85-40f0-9500-2a4a7781a6c4": ["1"]}
    api_file, node_file = seed_files(tmp_path, changed_api, {**SEED_NODES, "2": "10.0.0.2"})
    out, _ = run("importconfig", "--api-file", api_file, "--node-file", node_file)
    assert "updated node 2 at 10.0.0.2:9002" in out
    assert "updated key ce34b5ac (nodes 1)" in out
    assert "0 created, 2 updated, 3 unchanged" in out
    assert [n.id for n in ApiKey.objects.get(prefix="ce34b5ac").nodes.all()] == [1]


def test_importconfig_skips_keys_that_are_not_uuids_without_printing_them(tmp_path, db):
    api_file, node_file = seed_files(tmp_path, {"guessable": ["1"], **SEED_API}, SEED_NODES)
    out, _ = run("importconfig", "--api-file", api_file, "--node-file", node_file)
    assert "entry 1 of the api file is not a UUID key: skipped" in out
    assert "guessable" not in out
    assert ApiKey.objects.count() == 3


def test_importconfig_warns_about_grants_to_undefined_nodes(tmp_path, db):
    api_file, node_file = seed_files(
        tmp_path, {"ce34b5ac-df85-40f0-9500-2a4a7781a6c4": ["2", "5"]}, SEED_NODES
    )
    out, _ = run("importconfig", "--api-file", api_file, "--node-file", node_file)
    assert "key ce34b5ac: node 5 is not defined, grant skipped" in out


@pytest.mark.parametrize(
    ("api_text", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('["a"]', "a JSON object"),
        ('{"54b22f56-9a84-4893-bc70-332e3b5ded66": "0"}', "a list"),
    ],
)
def test_importconfig_refuses_a_malformed_file_and_changes_nothing(tmp_path, db, api_text, message):
    node_file = seed_files(tmp_path)[1]
    (tmp_path / "api.conf").write_text(api_text)
    with pytest.raises(CommandError, match=message):
        run("importconfig", "--api-file", str(tmp_path / "api.conf"), "--node-file", node_file)
    assert Node.objects.count() == 0


@pytest.mark.parametrize("node_id", ["0", "x", "\u00b2", "2147483648"])
def test_importconfig_refuses_a_bad_node_id(tmp_path, db, node_id):
    node_file = seed_files(tmp_path, SEED_API, {node_id: "10.0.0.1"})[1]
    with pytest.raises(CommandError, match="is not a node number"):
        run("importconfig", "--node-file", node_file)
    assert Node.objects.count() == 0


def test_importconfig_refuses_a_bad_node_address(tmp_path, db):
    node_file = seed_files(tmp_path, SEED_API, {"1": "10.0.0.1:99999"})[1]
    with pytest.raises(CommandError, match="node 1"):
        run("importconfig", "--node-file", node_file)
