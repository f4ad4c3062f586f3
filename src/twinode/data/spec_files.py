"""FeatureSpecs by name: ``configs/data/NAME.yaml`` (its ``source.spec``) from the config folders
twinode searches (:mod:`twinode.config_dir`), or a YAML file given by path."""

from __future__ import annotations

from pathlib import Path

from twinode.config_dir import candidate_dirs
from twinode.errors import ConfigError
from twinode.limits import load_file


def _synthetic_icu_spec():
    from twinode.data.simulators.synthetic_icu import feature_spec

    return feature_spec()


# Data configs whose source builds its FeatureSpec in code (no source.spec in the YAML).
CODE_SPECS = {"twinode.data.sources.SyntheticICUSource": _synthetic_icu_spec}


def load_spec(name: str):
    """A FeatureSpec from ``configs/data/NAME.yaml`` (its ``source.spec``) or from a YAML file path."""
    from twinode.data.schema import FeatureSpec

    path = Path(name)
    if not path.suffix:
        found = [d / "data" / f"{name}.yaml" for d in candidate_dirs() if (d / "data" / f"{name}.yaml").exists()]
        if not found:
            avail = sorted({p.stem for d in candidate_dirs() if (d / "data").is_dir() for p in (d / "data").glob("*.yaml")})
            raise ConfigError("--spec", name, avail or None, hint="name a configs/data/<name>.yaml or give a YAML path")
        path = found[0]
    if not path.exists():
        raise ConfigError("--spec", name, hint="no such file")
    doc = load_file(path, "FeatureSpec") or {}
    if not isinstance(doc, dict):
        raise ConfigError("--spec", name, hint=f"{path} holds a {type(doc).__name__}, expected a mapping (a FeatureSpec "
                          "or a data config with source.spec)")
    raw_source = doc.get("source")
    source: dict = raw_source if isinstance(raw_source, dict) else {}
    spec = source.get("spec")
    if spec is None and source.get("_target_") in CODE_SPECS:  # a source that generates its data and spec in code
        return CODE_SPECS[source["_target_"]]()
    return FeatureSpec.from_dict(spec if spec is not None else doc, name=None, source=str(path))
