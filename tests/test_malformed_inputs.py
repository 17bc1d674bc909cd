"""Every malformed input is refused with exit 2 and one line per problem, in bounded
time and memory, through the real CLI (``python -m simulation.cli.main``).

Bounds are enforced on the child, not measured: ``RLIMIT_AS`` (500 MB of address
space: exceeding it is a ``MemoryError`` traceback, which fails the test) and
``RLIMIT_CPU`` (5 s of CPU: exceeding it kills the child). The wall-clock timeout
only catches a child that blocks (a FIFO that is never written, say).
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "malformed"
MEMORY = 500 * 1024 * 1024
CPU_SECONDS = 5
WALL_SECONDS = 60

# What each file must be refused for (a substring of one of its lines).
EXPECTED = {
    "billion_laughs.yaml": "anchors and aliases",
    "binary_png.yaml": "a binary file",
    "binary_tag.yaml": "name -> unsupported YAML value of type bytes",
    "cabal_unknown_client.yaml": "accounts -> client-099 does not exist (clients.count is 20",
    "coalition_unknown_member.yaml": "timeline.0.params -> client-042 is not a client",
    "comments_only.yaml": "empty scenario",
    "control_character.yaml": "control characters are not allowed",
    "deep_block_nesting.yaml": "nested deeper than 32 levels",
    "deep_flow_nesting.yaml": "nesting depth",
    "duplicate_key.yaml": "duplicate key 'rounds'",
    "empty.yaml": "empty scenario",
    "escape_in_key.yaml": "\\x1b[2Jwiped\\nsecond line -> unknown field (valid: aggregation,",
    "every_problem_at_once.yaml": "timeline.0.group -> no population group 'nobody'",
    "fault_client_missing.yaml": "faults.0.client -> client 7 does not exist",
    "hex_integer.yaml": "seed -> integer out of range",
    "huge_integer.yaml": "integer has too many digits",
    "infinite_emission.yaml": "emission_per_round -> Input should be a finite number",
    "many_values.yaml": "more than 20000 values",
    "mechanism_param_typo.yaml": "rewards.params.foo -> unknown parameter (valid: default,",
    "merge_key_alias.yaml": "anchors and aliases",
    "nan_learning_rate.yaml": "training.lr -> Input should be a finite number",
    "non_string_key.yaml": "model -> keys must be strings",
    "non_utf8.yaml": "not UTF-8 text (byte 0xe9 at offset 36)",
    "null_document.yaml": "empty scenario",
    "population_clients_missing.yaml": "population.0.clients -> client 25 does not exist",
    "population_fractions.yaml": "0.54 of 10 clients is 5.4 clients, not a whole number",
    "population_overfull.yaml": "groups hold 11 clients but clients.count is 10",
    "python_tag.yaml": "could not determine a constructor",
    "schema_and_names.yaml": "aggregation.strategy -> unknown strategy 'nope' (valid: bulyan,",
    "set_tag.yaml": "unsupported YAML value of type set",
    "syntax_error.yaml": "line 2, column 7 -> invalid YAML",
    "tab_indent.yaml": "line 2, column 1 -> invalid YAML",
    "timeline_outside_run.yaml": "start_round -> round 20 is after the last round (rounds: 15)",
    "top_level_list.yaml": "the top level must be a mapping",
    "top_level_scalar.yaml": "the top level must be a mapping",
    "two_documents.yaml": "invalid YAML",
    "unknown_registry_names.yaml": "unknown training behaviour 'telepathy' (valid: backdoor,",
    "whitewashers_not_clients.yaml": "client-010 does not exist",
}
# Files reporting several problems: every one of them, together.
ALL_AT_ONCE = {
    "every_problem_at_once.yaml": [
        "population.0.fraction -> 0.25 of 10 clients is 2.5 clients",
        "timeline.0.group -> no population group 'nobody' (groups: riders)",
        "timeline.1.round -> round 9 is after the last round (rounds: 5)",
        "rewards.params.foo -> unknown parameter (valid: default, max_share, min_score)",
        "market.behaviours.0.params.accounts -> client-099 does not exist",
    ],
    "schema_and_names.yaml": [
        "seed -> Input should be greater than or equal to 0",
        "clients.fractoin -> unknown field (valid: count, fraction, min_per_round)",
        "rounds -> Input should be greater than or equal to 1",
        "aggregation.strategy -> unknown strategy 'nope'",
    ],
}
SWEEPS = {
    "alias.yaml": "anchors and aliases",
    "base_directory.yaml": "base -> ",
    "base_missing.yaml": "no_such_scenario.yaml: file not found",
    "seed_out_of_range.yaml": "seeds.1 -> integer out of range",
    "too_many_runs.yaml": "the study has 10000 runs (10000 designs x 1 seeds); at most 1000",
    "variant_invalid.yaml": "parameters.population.3.fraction -> no item 3",
}


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))


def _start(args: Sequence[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "simulation.cli.main", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        preexec_fn=_limits,  # only setrlimit, before exec
    )


def fedmarket(*commands: Sequence[str]) -> list[subprocess.CompletedProcess[str]]:
    """Each command line run by the CLI in a child bounded to 500 MB of address space
    and 5 s of CPU; the children run side by side (the bounds are per child)."""
    procs = [(args, _start(args)) for args in commands]
    done = []
    for args, proc in procs:
        try:
            out, err = proc.communicate(timeout=WALL_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise AssertionError(f"{args} blocked for {WALL_SECONDS} s") from None
        done.append(subprocess.CompletedProcess(list(args), proc.returncode, out, err))
    return done


def _refused(proc: subprocess.CompletedProcess[str], source: str) -> list[str]:
    """Assert a clean refusal: exit 2, no traceback, every line names ``source``."""
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines, "no message"
    assert all(line.startswith(source) for line in lines), lines
    return lines


def _check(path: Path, expected: str, tmp_path: Path) -> None:
    run = ["run", str(path), "--out", str(tmp_path / "out"), "--engine", "inprocess"]
    for proc in fedmarket(["validate", str(path)], run):
        lines = _refused(proc, str(path))
        assert any(expected in line for line in lines), (proc.args, expected, lines)
        for line in ALL_AT_ONCE.get(path.name, ()):
            assert any(line in got for got in lines), (line, lines)
    assert not (tmp_path / "out").exists(), "a refused run created its --out"


def test_every_corpus_file_has_an_expectation() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.yaml")) == sorted(EXPECTED)
    assert sorted(p.name for p in (CORPUS / "sweeps").glob("*.yaml")) == sorted(SWEEPS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_scenario_is_refused(name: str, tmp_path: Path) -> None:
    _check(CORPUS / name, EXPECTED[name], tmp_path)


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_malformed_sweep_is_refused(name: str, tmp_path: Path) -> None:
    path = CORPUS / "sweeps" / name
    (proc,) = fedmarket(["compare", str(path), "--out", str(tmp_path / "out")])
    lines = _refused(proc, str(path))
    assert any(SWEEPS[name] in line for line in lines), lines
    assert not (tmp_path / "out").exists()


def _oversize(tmp: Path) -> tuple[Path, str]:
    path = tmp / "oversize.yaml"
    path.write_text("foo: [" + ",".join(["1"] * 600_000) + "]\n")  # 1.1 MiB
    return path, "over the 1 MiB (1048576 bytes) limit"


def _directory(tmp: Path) -> tuple[Path, str]:
    (tmp / "dir.yaml").mkdir()
    return tmp / "dir.yaml", "is a directory, not a scenario file"


def _fifo(tmp: Path) -> tuple[Path, str]:
    os.mkfifo(tmp / "fifo.yaml")  # nobody writes: a blocking open would hang
    return tmp / "fifo.yaml", "not a regular file"


def _socket(tmp: Path) -> tuple[Path, str]:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp / "s.yaml"))
    sock.close()
    return tmp / "s.yaml", "cannot read: No such device or address"


def _device(tmp: Path) -> tuple[Path, str]:
    return Path("/dev/zero"), "not a regular file"


def _missing(tmp: Path) -> tuple[Path, str]:
    return tmp / "absent.yaml", "file not found"


def _under_a_file(tmp: Path) -> tuple[Path, str]:
    (tmp / "file").write_text("rounds: 1\n")
    return tmp / "file" / "s.yaml", "cannot read: Not a directory"


def _symlink_loop(tmp: Path) -> tuple[Path, str]:
    (tmp / "loop.yaml").symlink_to(tmp / "loop.yaml")
    return tmp / "loop.yaml", "cannot read: Too many levels of symbolic links"


def _unreadable(tmp: Path) -> tuple[Path, str]:
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    path = tmp / "secret.yaml"
    path.write_text("rounds: 1\n")
    path.chmod(0)
    return path, "cannot read: permission denied"


MADE = {
    "oversize": _oversize,
    "directory": _directory,
    "fifo": _fifo,
    "socket": _socket,
    "device": _device,
    "missing": _missing,
    "under-a-file": _under_a_file,
    "symlink-loop": _symlink_loop,
    "unreadable": _unreadable,
}


@pytest.mark.parametrize("case", sorted(MADE))
def test_path_that_is_no_scenario_file_is_refused(case: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    path, expected = MADE[case](src)
    _check(path, expected, tmp_path)


NO_HEAVY_IMPORT = """
import sys
from collections.abc import Sequence
from simulation.errors import ScenarioError
from simulation.scenario.load import load_scenario
for path in sys.argv[1:]:
    try:
        load_scenario(path)
    except ScenarioError:
        pass
    else:
        raise SystemExit(f"{path} was accepted")
print(sorted(m for m in ("torch", "flwr", "ray") if m in sys.modules))
"""


def test_unreadable_yaml_is_refused_before_torch_or_flower_is_imported(tmp_path: Path) -> None:
    files = [CORPUS / n for n in ("billion_laughs.yaml", "many_values.yaml", "binary_png.yaml")]
    big, _ = _oversize(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", NO_HEAVY_IMPORT, *map(str, [*files, big])],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=WALL_SECONDS,
        preexec_fn=_limits,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_set_values_go_through_the_same_guards(tmp_path: Path) -> None:
    quickstart = str(ROOT / "scenarios" / "quickstart.yaml")
    cases = {
        "name=&a [*a]": "anchors and aliases",
        "model.hidden=" + "[" * 40 + "]" * 40: "nested deeper than 32 levels",
        "population.3.fraction=0.1": "no item 3 (population has no items)",
        "model.hidden.5=3": "no item 5 (model.hidden has 1 item)",
        ".".join(["a"] * 40) + "=1": "key nested deeper than 32 levels",
    }
    procs = fedmarket(*(["validate", quickstart, "--set", text] for text in cases))
    for proc, (text, expected) in zip(procs, cases.items(), strict=True):
        (line,) = _refused(proc, "--set")
        assert expected in line, (text, line)
