"""Hub models by hub id: read from the Hugging Face cache at the pinned revision, offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.hub_layout import model_files, write_repo
from tsdcls.common.assets import AssetMissingError, minilm_path
from tsdcls.common.hub_cache import HubEntryMissingError, hub_dir
from tsdcls.tempscale.patch import load_encoder

HUB_ID = "tsdcls-test/all-MiniLM-L6-v2-hub"
REVISION = "0123456789abcdef0123456789abcdef01234567"
TEXTS = ["a short sentence", "the red lighthouse stands on the cliff", "violins made of glass"]


@pytest.fixture()
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF_HOME with the MiniLM files laid out as a hub repository; hub switches off."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(key, "1")
    return write_repo(hub_dir(), "model", HUB_ID, REVISION, model_files(minilm_path()))


def test_hub_id_loads_from_cache_and_matches_offline_alias(offline_cache: Path) -> None:
    hub_model = load_encoder(HUB_ID, revision=REVISION)
    alias_model = load_encoder("minilm")
    first = hub_model[0].auto_model.name_or_path
    assert Path(first).resolve() == offline_cache.resolve(), first  # read from the snapshot folder
    a = hub_model.encode(TEXTS, convert_to_numpy=True)
    b = alias_model.encode(TEXTS, convert_to_numpy=True)
    assert a.shape == (3, 384)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert hub_model.tempscale["base"] == HUB_ID  # mteb name: the hub id itself


def test_missing_revision_names_model_revision_and_stage(offline_cache: Path) -> None:
    other = "f" * 40
    with pytest.raises(HubEntryMissingError) as err:
        load_encoder(HUB_ID, revision=other)
    message = str(err.value)
    assert "\n" not in message
    for part in (HUB_ID, other, "snakemake stage", "resources.hf_cache", "offline"):
        assert part in message, message


def test_hub_id_without_pinned_revision_names_config_key(offline_cache: Path) -> None:
    with pytest.raises(AssetMissingError, match=r"tempscale\.model_revisions"):
        load_encoder(HUB_ID)


def test_missing_local_folder_is_still_a_folder_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        load_encoder(str(tmp_path / "no-such-model"))
