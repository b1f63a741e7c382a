"""The one declaration of every profile field (sandbox/core/fields.py) and what follows from it."""

import os

import pytest

from sandbox._record import fields as record_fields
from sandbox.core import fields, loader
from sandbox.core.lint import RULE_FIELDS, rules_by_field
from sandbox.core.profile import Profile
from tests.conftest import ROOT

# model attributes that no YAML key fills: identity of the profile and what is derived from fields
DERIVED = {"name", "extends", "source", "sha256", "resolved", "files", "seccomp.base_profile"}


def _model_attributes():
    out = set()
    for name in record_fields(Profile(name="x")):
        default = getattr(Profile, name, None)
        if hasattr(default.__class__, "__record_fields__") and name not in ("resources",):
            out |= {f"{name}.{n}" for n in default.__class__.__record_fields__}
        else:
            out.add(name)
    return out


def test_every_model_attribute_is_filled_by_exactly_one_field():
    declared = [f.attr_path for f in fields.FIELDS if f.attr is not None]
    assert len(declared) == len(set(declared)), "two fields fill one attribute"
    model = {a for a in _model_attributes() if a not in DERIVED}
    # resources.memory/pids/cpu are one field each (a {max, default} mapping)
    model |= {"resources.memory", "resources.pids", "resources.cpu"}
    model.discard("resources")
    assert set(declared) == model


def test_the_committed_reference_is_the_generated_one():
    path = os.path.join(ROOT, "docs", "profile-reference.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert fields.render_reference(text, rules_by_field()) == text, "run scripts/profile-reference.py"
    for group in {f.group for f in fields.FIELDS}:
        assert fields.BEGIN.format(group) in text, f"docs/profile-reference.md has no table for {group}"


def test_every_lint_rule_names_a_declared_field_or_section():
    names = {f.name for f in fields.FIELDS} | set(fields.sections())
    assert set(RULE_FIELDS.values()) <= names


class Collect:
    def __init__(self):
        self.errors = []

    def err(self, path, msg, hint=None):
        self.errors.append((path, msg))

    def warn(self, path, msg):
        pass

    def keys(self, data, path, allowed):
        self.errors += [((*path, k), "unknown") for k in data if k not in allowed]

    def typed(self, value, path, kind, what):
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
        if not ok:
            self.errors.append((path, what))
        return ok

    def str_list(self, value, path):
        return [v for v in value if isinstance(v, str)] if self.typed(value, path, list, "list") else []

    def seccomp_file_problem(self, path):
        return "no files here"


def test_the_defaults_satisfy_their_own_kinds_and_the_schema():
    import jsonschema

    doc = {"apiVersion": "sandbox/v1", "kind": "Profile", "name": "defaults", **fields.defaults()}
    c = Collect()
    fields.check_document(c, doc)
    assert c.errors == []
    jsonschema.validate(doc, fields.profile_schema())


@pytest.mark.parametrize("field", [f for f in fields.FIELDS if f.default is not fields.REQUIRED],
                         ids=lambda f: f.name)
def test_each_field_rejects_a_value_of_the_wrong_shape(field):
    wrong = 3.5 if not isinstance(field.kind, fields.LimitKind) else {"max": "lots"}
    doc = {"apiVersion": "sandbox/v1", "kind": "Profile", "name": "x"}
    node = doc
    for key in field.path[:-1]:
        node = node.setdefault(key, {})
    node[field.path[-1]] = wrong
    c = Collect()
    fields.check_document(c, doc)
    assert c.errors and all(p[: len(field.path)] == field.path for p, _ in c.errors)


def test_additive_lists_and_defaults_come_from_the_declaration():
    assert loader.ADDITIVE_LISTS == {("filesystem", "masked_paths"), ("filesystem", "readonly_paths"),
                                     ("filesystem", "forbidden_host_paths"), ("network", "deny_always")}
    assert loader.DEFAULTS["filesystem"]["bind_mounts"] == {"readonly": False, "nosuid_nodev": True}
    assert "resources" in loader.DEFAULTS and loader.DEFAULTS["resources"] == {}


def test_a_new_field_is_one_entry(monkeypatch, tmp_path):
    """Declaring a field makes it validate with its position, merge, show in the schema and diff."""
    from sandbox.core.diff import diff

    extra = fields.Field(("filesystem", "example_flag"), fields.Bool(), False, "an example", fields.Flag(True),
                         attr=None)
    monkeypatch.setattr(fields, "FIELDS", (*fields.FIELDS, extra))
    monkeypatch.setattr(loader, "DEFAULTS", fields.defaults())  # computed once, at import, from the table
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: sandbox/v1\nkind: Profile\nname: bad\nfilesystem:\n  example_flag: maybe\n")
    with pytest.raises(loader.ProfileError) as e:
        loader.load_profile(str(bad))
    assert str(e.value) == f"{bad}:5:3: filesystem.example_flag: expected true or false, got a string"
    typo = tmp_path / "typo.yaml"
    typo.write_text("apiVersion: sandbox/v1\nkind: Profile\nname: typo\nfilesystem:\n  exampel_flag: true\n")
    with pytest.raises(loader.ProfileError, match="did you mean 'example_flag'"):
        loader.load_profile(str(typo))
    schema = fields.profile_schema()
    assert schema["properties"]["filesystem"]["properties"]["example_flag"]["type"] == "boolean"
    assert "filesystem.example_flag" in fields.reference_table("filesystem")
    assert fields.defaults()["filesystem"]["example_flag"] is False
    on = tmp_path / "on.yaml"
    on.write_text("apiVersion: sandbox/v1\nkind: Profile\nname: flag-on\nextends: strict\nfilesystem:\n"
                  "  example_flag: true\n")
    assert loader.load_profile(str(on)).resolved["filesystem"]["example_flag"] is True
    changes = [str(c) for c in diff(loader.load_profile(str(on)), loader.load_profile("strict"))]
    assert changes == ["loosen  filesystem.example_flag: True -> False"]
