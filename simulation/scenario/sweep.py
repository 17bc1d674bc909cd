"""Sweep files and ``--set`` sweeps: which scenario variants a study runs.

A study is a set of *designs* (one value per swept parameter) crossed with
*seeds* (the replicates of each design). Designs come either from a sweep
YAML file or from ``--set key=v1,v2`` on the command line. The sweep says
outright whether its lists are crossed (``mode: product``, the default) or
paired by index (``mode: zip``), because the two readings of the same file
give very different studies (radCAD zips, Mesa crosses; we make users say).

Every variant is validated through :func:`simulation.scenario.load.load_scenario`
before anything runs, and every problem of every variant is reported at once
in the ``FILE: field.path -> reason`` form, so a typo costs one edit, not one
failed run per variant.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulation.errors import Problem, ScenarioError
from simulation.scenario.load import problems_from_validation, read_yaml, scenario_from_data
from simulation.scenario.safe_yaml import parse_value

__all__ = [
    "Engine",
    "Study",
    "SweepFile",
    "Variant",
    "is_sweep_file",
    "parse_set_options",
    "resolve_study",
    "run_id_for",
]

log = logging.getLogger("fedmarket.compare")

Engine = Literal["flower", "inprocess"]
# Dotted field path; a numeric segment indexes a list (``population.0.fraction``).
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.([A-Za-z_][A-Za-z0-9_]*|[0-9]+))*$")
MAX_RUNS = 1000
"""Most runs (designs × seeds) one study may hold: it is refused before any variant
is built, so ``--set a=1,2,...`` crossed ten times cannot exhaust memory."""
MAX_SEED = 2**63 - 1


class SeedRange(BaseModel):
    """``seeds: {count: N, start: S}``: the seeds S, S+1, ..., S+N-1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(ge=1, le=100_000)
    start: int = Field(0, ge=0)


class SweepFile(BaseModel):
    """The root of a sweep YAML file (``schema_version: 1``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_version: Literal[1] = 1
    name: str = Field("study", min_length=1, max_length=200)
    base: str = Field(min_length=1, description="scenario file, relative to the sweep file")
    mode: Literal["product", "zip"] = Field(
        "product", description="product: cross product of the lists; zip: pair them by index"
    )
    parameters: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: list[int] | SeedRange | None = Field(
        None, description="crossed with every design; default: the base scenario's seed"
    )
    fixed: dict[str, Any] = Field(default_factory=dict, alias="set")
    engine: Engine = "flower"


@dataclass(frozen=True)
class Variant:
    """One run of a study: a design (swept values), a seed, and where it lives."""

    run_id: str
    design: str
    params: tuple[tuple[str, Any], ...]
    seed: int
    overrides: tuple[str, ...]
    scenario_hash: str = ""


@dataclass(frozen=True)
class Study:
    """A fully resolved and validated study, ready to run."""

    name: str
    source: str
    base: Path
    mode: Literal["product", "zip"]
    parameters: dict[str, list[Any]]
    seeds: tuple[int, ...]
    fixed: dict[str, Any]
    engine: Engine
    variants: tuple[Variant, ...]

    @property
    def swept_keys(self) -> tuple[str, ...]:
        """The parameters that vary across designs, in declaration order."""
        return tuple(self.parameters)

    def resolved(self) -> dict[str, Any]:
        """Plain JSON data describing the study (written to ``study.json``)."""
        return {
            "name": self.name,
            "source": self.source,
            "base": str(self.base),
            "mode": self.mode,
            "parameters": self.parameters,
            "seeds": list(self.seeds),
            "set": self.fixed,
            "engine": self.engine,
            "runs": [
                {
                    "run_id": v.run_id,
                    "design": v.design,
                    "params": dict(v.params),
                    "seed": v.seed,
                    "overrides": list(v.overrides),
                }
                for v in self.variants
            ],
        }


# ----------------------------------------------------------------------- --set


def parse_set_options(options: Iterable[str]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Split ``--set`` options into fixed overrides and swept parameters.

    ``key=v`` is a fixed override; ``key=v1,v2`` sweeps ``key`` over the
    comma-separated values, each read as YAML. A value that starts with
    ``[``, ``{``, ``"`` or ``'`` is read whole as one YAML value first, which
    is how to pass a literal comma: ``model.hidden=[64,32]`` is one list,
    ``name="a,b"`` one string.
    """
    fixed: dict[str, Any] = {}
    swept: dict[str, list[Any]] = {}
    problems: list[Problem] = []
    for text in options:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            problems.append(Problem("--set", text, "expected key.path=value"))
            continue
        stripped = raw.strip()
        try:
            if stripped[:1] in ("[", "{", '"', "'"):
                values = [parse_value(stripped, "--set", text)]
            else:
                values = [parse_value(part.strip(), "--set", text) for part in raw.split(",")]
        except ScenarioError as exc:
            problems.extend(exc.problems)
            continue
        if len(values) == 1:
            fixed[key] = values[0]
            swept.pop(key, None)
        else:
            swept[key] = values
            fixed.pop(key, None)
    if problems:
        raise ScenarioError(problems)
    return fixed, swept


# ----------------------------------------------------------------------- run ids


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _slug_part(value: Any) -> str:
    text = value if isinstance(value, str) else _canonical(value)
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:16] or "x"


def run_id_for(params: Mapping[str, Any], fixed: Mapping[str, Any], seed: int) -> str:
    """A stable, readable run id: ``<slug>-s<seed>-<hash8>``.

    The hash covers every override (swept and fixed) and the seed, so the id
    is the same on every machine and every resume, and changes when any of
    them does; the slug (last key part and value of each swept parameter) is
    only there for humans listing ``runs/``.
    """
    digest = hashlib.sha256(
        _canonical({"params": dict(params), "set": dict(fixed), "seed": seed}).encode("utf-8")
    ).hexdigest()[:8]
    parts = [f"{k.rsplit('.', 1)[-1]}-{_slug_part(v)}" for k, v in params.items()]
    slug = "_".join(parts)[:60].strip("-_") or "base"
    return f"{slug}-s{seed}-{digest}"


def design_label(params: Mapping[str, Any]) -> str:
    """``key=value, ...`` of the swept parameters, or ``base`` when nothing is swept."""
    if not params:
        return "base"
    return ", ".join(f"{k}={v if isinstance(v, str) else _canonical(v)}" for k, v in params.items())


def _override_text(key: str, value: Any) -> str:
    # JSON is YAML flow syntax, so the value round-trips through parse_override.
    return f"{key}={_canonical(value)}"


# ----------------------------------------------------------------------- loading


def is_sweep_file(data: Mapping[str, Any]) -> bool:
    """A YAML mapping is a sweep file when it names a ``base`` scenario."""
    return "base" in data


def _designs(parameters: Mapping[str, list[Any]], mode: str, source: str) -> list[dict[str, Any]]:
    keys = list(parameters)
    if not keys:
        return [{}]
    lists = [parameters[k] for k in keys]
    if mode == "zip":
        lengths = {len(v) for v in lists}
        if len(lengths) > 1:
            shown = ", ".join(f"{k} has {len(parameters[k])}" for k in keys)
            raise ScenarioError(
                [Problem(source, "parameters", f"mode zip needs lists of equal length ({shown})")]
            )
        return [dict(zip(keys, combo, strict=True)) for combo in zip(*lists, strict=True)]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*lists)]


def _check_parameters(
    parameters: Mapping[str, list[Any]], fixed: Mapping[str, Any], source: str
) -> list[Problem]:
    problems: list[Problem] = []
    for key, values in parameters.items():
        if not _KEY.match(key):
            problems.append(Problem(source, f"parameters.{key}", "expected a dotted key path"))
        elif key == "seed":
            problems.append(Problem(source, "parameters.seed", "use seeds: to sweep seeds"))
        elif not values:
            problems.append(Problem(source, f"parameters.{key}", "empty list"))
    for key in fixed:
        if not _KEY.match(key):
            problems.append(Problem(source, f"set.{key}", "expected a dotted key path"))
        elif key in parameters:
            problems.append(Problem(source, f"set.{key}", "also swept in parameters"))
    return problems


def _attribute(problem: Problem, origins: Mapping[str, Problem], label: str) -> Problem:
    """Point a scenario problem at the sweep entry or ``--set`` that caused it, if one did.

    ``origins`` maps each overridden key to where the user wrote it (source and
    field of a :class:`Problem`, reason unused).
    """
    field = problem.field
    if problem.source == "--set":  # an override the study generated: "key=value"
        field = field.partition("=")[0]
    for key, where in origins.items():
        if field == key or field.startswith(key + ".") or key.startswith(field + "."):
            return Problem(where.source, where.field, problem.reason)
    return Problem(problem.source, problem.field, f"{problem.reason} (in design {label})")


def _validate_variants(
    base: Path,
    data: Mapping[str, Any],
    designs: Sequence[Mapping[str, Any]],
    fixed: Mapping[str, Any],
    seeds: Sequence[int],
    source: str,
    origins: Mapping[str, Problem],
) -> tuple[Variant, ...]:
    """Validate every design (the base file is read once; a design is validated with its
    first seed, the seed being the only field the others change); collect every
    problem, then raise."""
    problems: dict[Problem, None] = {}
    variants: list[Variant] = []
    fixed_overrides = [_override_text(k, v) for k, v in fixed.items()]
    for params in designs:
        label = design_label(params)
        overrides = tuple(fixed_overrides + [_override_text(k, v) for k, v in params.items()])
        try:
            first = scenario_from_data(data, str(base), overrides, seeds[0])
        except ScenarioError as exc:
            problems.update((_attribute(p, origins, label), None) for p in exc.problems)
            continue
        for seed in seeds:
            scenario = first.model_copy(update={"seed": seed})
            variants.append(
                Variant(
                    run_id=run_id_for(params, fixed, seed),
                    design=label,
                    params=tuple(params.items()),
                    seed=seed,
                    overrides=overrides,
                    scenario_hash=scenario.sha256(),
                )
            )
    if problems:
        raise ScenarioError(list(problems))
    ids = [v.run_id for v in variants]
    if len(set(ids)) != len(ids):
        raise ScenarioError([Problem(source, "parameters", "two variants are identical")])
    return tuple(variants)


def _check_size(
    file_params: Mapping[str, list[Any]],
    mode: str,
    cli_swept: Mapping[str, list[Any]],
    seeds: Sequence[int],
    source: str,
) -> None:
    """Refuse out-of-range seeds, and studies of more than :data:`MAX_RUNS` runs before
    any design is built."""
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        reason = f"seed {bad[0]} is out of range (0..{MAX_SEED})"
        raise ScenarioError([Problem(source, "seeds", reason)])
    lengths = [len(v) for v in file_params.values()]
    file_designs = max(lengths, default=1) if mode == "zip" else math.prod(lengths)
    designs = file_designs * math.prod(len(v) for v in cli_swept.values())
    runs = designs * len(seeds)
    if runs > MAX_RUNS:
        reason = (
            f"the study has {runs} runs ({designs} designs x {len(seeds)} seeds); "
            f"at most {MAX_RUNS} are allowed"
        )
        raise ScenarioError([Problem(source, "parameters", reason)])


def _read_base(base: Path, sweep: str | None) -> dict[str, Any]:
    """The base scenario's data; a sweep file's unreadable base is its ``base`` field's problem."""
    try:
        return read_yaml(base)
    except ScenarioError as exc:
        if sweep is None:
            raise
        raise ScenarioError(
            [Problem(sweep, "base", f"{base}: {p.reason}") for p in exc.problems]
        ) from None


def _base_seed(data: Mapping[str, Any]) -> int:
    """The base scenario's own seed, read without validating (variants are validated later)."""
    seed = data.get("seed", 0)
    return seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else 0


def resolve_study(
    path: Path | str,
    set_options: Iterable[str] = (),
    *,
    engine: Engine | None = None,
) -> Study:
    """Resolve a sweep file or a scenario file plus ``--set`` sweeps into a :class:`Study`.

    ``path`` is a sweep file when its YAML names a ``base``; otherwise it is a
    scenario and the study is the product of the comma-separated ``--set``
    values. In both cases ``--set key=v`` adds a fixed override, ``--set
    key=v1,v2`` a swept parameter crossed with the file's designs, and
    ``--set seed=1,2,3`` replaces the seeds. Raises ``ScenarioError`` listing
    every problem in every variant.
    """
    path = Path(path)
    source = str(path)
    data = read_yaml(path)
    cli_fixed, cli_swept = parse_set_options(set_options)
    cli_seeds: list[int] | None = None
    seed_value = cli_swept.pop("seed", None)
    if seed_value is None and "seed" in cli_fixed:
        seed_value = [cli_fixed.pop("seed")]
    if seed_value is not None:
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seed_value):
            raise ScenarioError([Problem("--set", "seed", "seeds must be integers >= 0")])
        cli_seeds = list(seed_value)

    if is_sweep_file(data):
        try:
            sweep = SweepFile.model_validate(data)
        except ValidationError as err:
            raise ScenarioError(problems_from_validation(source, err)) from None
        base = (path.parent / sweep.base).resolve()
        name, mode = sweep.name, sweep.mode
        file_params = dict(sweep.parameters)
        fixed = {**sweep.fixed, **cli_fixed}
        seeds_spec = sweep.seeds
        chosen_engine: Engine = engine or sweep.engine
        if isinstance(seeds_spec, SeedRange):
            seeds: list[int] | None = list(
                range(seeds_spec.start, seeds_spec.start + seeds_spec.count)
            )
        else:
            seeds = list(seeds_spec) if seeds_spec is not None else None
        if seeds is not None and not seeds:
            raise ScenarioError([Problem(source, "seeds", "empty list")])
    else:
        base = path.resolve()
        name, mode = Path(path).stem, "product"
        file_params, fixed, seeds = {}, dict(cli_fixed), None
        chosen_engine = engine or "flower"

    problems = _check_parameters(file_params, fixed, source)
    problems += _check_parameters(cli_swept, {}, "--set")
    for key in cli_swept:
        if key in file_params:
            problems.append(Problem("--set", key, "already swept in the sweep file"))
    if problems:
        raise ScenarioError(problems)
    if cli_seeds is not None:
        seeds = cli_seeds
    base_data = _read_base(base, source if is_sweep_file(data) else None)
    if seeds is None:
        seeds = [_base_seed(base_data)]
    seeds = list(dict.fromkeys(seeds))
    _check_size(file_params, mode, cli_swept, seeds, source)

    file_designs = _designs(file_params, mode, source)
    cli_designs = _designs(cli_swept, "product", "--set")
    designs = [{**a, **b} for a in file_designs for b in cli_designs]
    origins = {k: Problem(source, f"parameters.{k}", "") for k in file_params}
    origins.update({k: Problem(source, f"set.{k}", "") for k in fixed if k not in cli_fixed})
    origins.update({k: Problem("--set", k, "") for k in [*cli_fixed, *cli_swept]})
    variants = _validate_variants(base, base_data, designs, fixed, seeds, source, origins)
    study = Study(
        name=name,
        source=source,
        base=base,
        mode=mode,
        parameters={**file_params, **cli_swept},
        seeds=tuple(seeds),
        fixed=fixed,
        engine=chosen_engine,
        variants=variants,
    )
    log.info(
        "study %s: %d designs x %d seeds = %d runs (%s)",
        name,
        len(designs),
        len(seeds),
        len(variants),
        mode,
    )
    return study
