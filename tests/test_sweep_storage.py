"""Storage URLs: what is accepted, and that a password never reaches a log, an error or a manifest."""

import pytest

from smelt.errors import SmeltError
from smelt.optimizers.sweep.storage import open_storage, storage_kind
from smelt.redaction import redact


@pytest.mark.parametrize("url, shown", [
    ("postgresql://postgres:s3cret@db:5432/optuna", "postgresql://postgres:***@db:5432/optuna"),
    ("postgresql://u:p@ss@db/optuna", "postgresql://u:***@db/optuna"),
    ("postgresql://u@db/optuna?password=s3cret&sslmode=require", "postgresql://u@db/optuna?password=***&sslmode=require"),
    ("postgresql://postgres@127.0.0.1/test", "postgresql://postgres@127.0.0.1/test"),
    ("sqlite:///study.db", "sqlite:///study.db"),
])
def test_redact_hides_passwords(url, shown):
    assert redact(url) == shown


def test_storage_kinds():
    assert storage_kind(None) == "journal"
    assert storage_kind("postgresql://u@h/db") == storage_kind("postgres://u@h/db") == "postgresql"
    assert storage_kind("sqlite:///x.db") == "sqlite"
    with pytest.raises(SmeltError, match="use postgresql://"):
        storage_kind("redis://localhost")


def test_a_malformed_url_is_one_error_without_its_password(tmp_path):
    with pytest.raises(SmeltError) as error:
        open_storage("postgresql://u:s3cret@db:notaport/x", tmp_path)
    assert "s3cret" not in str(error.value) and "cannot open the study storage" in str(error.value)


def test_sqlite_is_for_one_process(tmp_path):
    said = []
    open_storage(f"sqlite:///{tmp_path / 'study.db'}", tmp_path, log=said.append)
    assert "one process only" in said[0]
    with pytest.raises(SmeltError, match="not safe for several workers"):
        open_storage(f"sqlite:///{tmp_path / 'study.db'}", tmp_path, workers=2)
