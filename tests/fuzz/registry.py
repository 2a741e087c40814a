"""Malformed-input generators, one entry per ``loratwin`` command (issue 9).

Registering a new command
-------------------------
Add a function decorated with ``@command("name")`` (the words after ``loratwin``) that returns
a Hypothesis strategy of :class:`~tests.fuzz.cases.Case`, every one of them bad input::

    @command("report")
    def _report() -> st.SearchStrategy[Case]:
        plan = PLAN_JSON                      # a small valid input
        return st.one_of(
            # a malformed input file
            bad_mapping(PLAN_SPEC, "json").map(lambda fw: Case(
                "report", ("report", "plan.json"), (("plan.json", fw[0]),), why=fw[1])),
            # a bad flag value or an unknown flag, the inputs valid
            bad_flag({"--top": NOT_A_POSITIVE_INT}).map(lambda aw: Case(
                "report", ("report", "plan.json", *aw[0]), (("plan.json", plan),), why=aw[1])),
        )

The building blocks (:mod:`tests.fuzz.strategies`) mutate a valid CSV (:class:`TableSpec`),
YAML/JSON mapping (:class:`MappingSpec`), flag (:func:`bad_flag`) or output path
(:func:`bad_output`). List the files the command would write in ``Case.outputs``: they must
not exist after the refusal. Keep valid base inputs tiny, so that a bad input that is wrongly
accepted finishes quickly (and is counted as accepted, not as a hang). Both the test
(``tests/fuzz/test_fuzz_cli.py``) and ``benchmarks/fuzz_cli.py`` pick the new entry up.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources

from hypothesis import strategies as st

from tests.fuzz.cases import Case
from tests.fuzz.strategies import (
    NEGATIVE,
    NOT_A_NUMBER,
    NOT_A_POSITIVE_INT,
    MappingSpec,
    TableSpec,
    bad_flag,
    bad_mapping,
    bad_output,
    bad_table,
    render_csv,
)

Factory = Callable[[], st.SearchStrategy[Case]]
REGISTRY: dict[str, Factory] = {}
MODEL = "llama-3.1-8b-instruct"


def command(name: str) -> Callable[[Factory], Factory]:
    """Register the malformed-input strategy of ``loratwin NAME``."""
    def deco(fn: Factory) -> Factory:
        if name in REGISTRY:
            raise ValueError(f"command {name!r} registered twice")
        REGISTRY[name] = fn
        return fn
    return deco


def strategy(name: str) -> st.SearchStrategy[Case]:
    return REGISTRY[name]()


# ----------------------------------------------------------------------------- valid inputs

ADAPTERS = TableSpec(
    header=("id", "rank", "rate", "mean_input_tokens", "mean_output_tokens"),
    rows=(("a", "8", "0.5", "200", "50"), ("b", "16", "0.2", "", ""), ("c", "8", "0.1", "100",
                                                                           "20")),
    bad_cells={"id": ("", "a"), "rank": NOT_A_POSITIVE_INT, "rate": (*NOT_A_NUMBER, *NEGATIVE),
               "mean_input_tokens": ("0", "-5", "abc", "nan", "inf"),
               "mean_output_tokens": ("0", "-1", "x")},
    numeric=("rank", "rate"),
    required=("id", "rank", "rate"),
    bad_tables=((("id", "rank", "rate", "colour"), ("a", "8", "1", "red")),
                (("id", "rank", "rank"), ("a", "8", "8"))),
)
ADAPTERS_CSV = render_csv([ADAPTERS.header, *ADAPTERS.rows])

TRACE = TableSpec(
    header=("arrival_time_s", "adapter_id", "input_tokens", "output_tokens"),
    rows=(("0.5", "a", "100", "20"), ("1.0", "b", "50", "10"), ("2.5", "a", "10", "5")),
    bad_cells={"arrival_time_s": (*NOT_A_NUMBER, *NEGATIVE), "adapter_id": ("", "zz-unknown"),
               "input_tokens": NOT_A_POSITIVE_INT, "output_tokens": NOT_A_POSITIVE_INT},
    numeric=("arrival_time_s", "input_tokens", "output_tokens"),
    required=("arrival_time_s", "adapter_id", "input_tokens", "output_tokens"),
    header_only_bad=False,
)
TRACE_CSV = render_csv([TRACE.header, *TRACE.rows])

SIM_CONFIG = MappingSpec(
    base={"model": MODEL, "server": {"max_loras": 2, "max_lora_rank": 16},
          "adapters": "ad.csv", "duration_s": 20, "seed": 0},
    bad_values={"server": ("x", 3, [1, 2]), "server.max_loras": (0, -1, "x", 2.5),
                "server.max_cpu_loras": (1,), "server.max_lora_rank": (8, 0),
                "server.max_num_seqs": (0, "many"), "server.gpu_memory_utilization": (0, 1.5),
                "server.bogus": (1,), "duration_s": (0, -5, "x", float("inf"), float("nan")),
                "seed": (-1, "x", 1.5), "model": ("no-such-model", "missing.json", 5),
                "adapters": ("missing.csv", 7, [{"id": "a"}]),
                "arrivals": ("poisson", {"process": "nope"}),
                "client.max_ports": (0,), "trace": ("missing.csv",)},
)
SIM_YAML = json.dumps(SIM_CONFIG.base).encode()  # JSON is YAML

_REAL_HEADER = ("rank_set", "max_lora_rank", "max_loras", "max_cpu_loras", "served_adapters",
                "max_num_seqs", "rates", "status", "total_time_s", "total_throughput",
                "mean_itl_ms", "mean_ttft_ms", "starvation_est")
REAL_RUNS = TableSpec(
    header=_REAL_HEADER,
    rows=(('"8,16"', "16", "2", "4", "4", "64", '"0.1,0.05"', "ok", "20", "80", "15", "40",
           "False"),),
    bad_cells={"max_lora_rank": NOT_A_POSITIVE_INT, "max_loras": NOT_A_POSITIVE_INT,
               "served_adapters": NOT_A_POSITIVE_INT, "max_num_seqs": ("0", "x"),
               "max_cpu_loras": ("1", "x"), "rank_set": ('"8,x"', '"32"', '"0"', ""),
               "rates": ('"0.1,y"', '"-1"', ""), "total_time_s": ("0", "-1", "x")},
    required=("rank_set", "max_lora_rank", "max_loras", "max_cpu_loras", "served_adapters",
              "max_num_seqs", "rates", "status"),
)
REAL_RUNS_CSV = render_csv([REAL_RUNS.header, *REAL_RUNS.rows])

_FEATURE_HEADER = ("sum_rate_req_s", "std_rate_req_s", "max_rank", "mean_rank", "std_rank",
                   "max_loras", "served_adapters", "mean_input_tokens", "mean_output_tokens",
                   "arrival_cv")
FEATURES = TableSpec(
    header=_FEATURE_HEADER,
    rows=(("6.4", "0.04", "32", "16", "4", "32", "128", "", "", ""),
          ("0.5", "0.005", "16", "12", "4", "8", "64", "300", "100", "1.5")),
    bad_cells={"sum_rate_req_s": (*NOT_A_NUMBER[1:], *NEGATIVE), "max_rank": ("0", "x", "2.5"),
               "mean_rank": ("40", "0.5", "x"), "std_rank": ("30", "-1"),
               "std_rate_req_s": ("5", "-1"), "max_loras": ("0", "1.5", "x"),
               "served_adapters": ("0", "2.5", "x"), "mean_input_tokens": ("0", "-3", "x"),
               "mean_output_tokens": ("0", "y"), "arrival_cv": ("-1", "x", "inf")},
    numeric=("sum_rate_req_s", "max_rank", "max_loras", "served_adapters"),
    required=_FEATURE_HEADER[:7],
)
FEATURES_CSV = render_csv([FEATURES.header, *FEATURES.rows])

AZURE = TableSpec(
    header=("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
    rows=(("2023-11-16 18:00:00.0000000", "100", "10"),
          ("2023-11-16 18:00:10.0000000", "300", "30")),
    bad_cells={"TIMESTAMP": ("yesterday", "", "2023-13-45 99:00:00", "17"),
               "ContextTokens": NOT_A_POSITIVE_INT, "GeneratedTokens": NOT_A_POSITIVE_INT},
    numeric=("ContextTokens", "GeneratedTokens"),
    required=("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
)
AZURE_CSV = render_csv([AZURE.header, *AZURE.rows])

DESIGN = MappingSpec(
    base={"duration_s": 20, "chunk_size": 4, "seed": 0},
    bad_values={"duration_s": (0, -1, "x", float("inf")), "chunk_size": (0, "x", 1.5),
                "seed": (-1, "x"), "max_num_seqs": (0,), "load_band": ([3.0, 0.2], [1], "x"),
                "model": ("no-such-model",), "grid": ("x", {"bogus": 1}),
                "qmc": ("x", {"bogus": 1})},
)

TWIN_SWEEP = MappingSpec(
    base={"server": {"enable_lora": False}, "adapters": 1, "max_num_seqs": [1, 16],
          "num_prompts": 20, "lengths": {"kind": "fixed", "input_tokens": 50,
                                         "output_tokens": 10}},
    bad_values={"adapters": (0, "x"), "max_num_seqs": ([0, 4], ["x"], "x", []),
                "num_prompts": (0, -3), "seed": (-1,), "server": ("x", {"bogus": 1}),
                "lengths": ({"kind": "nope"}, "x"), "model": ("no-such-model",),
                "output_lens": ([0], ["x"])},
)


def _sweep_spec() -> TableSpec:
    text = (resources.files("loratwin") / "data" / "bca" / "batch_sweep_sharegpt.csv").read_text()
    lines = [ln.split(",") for ln in text.splitlines() if ln.strip()]
    header, rows = tuple(lines[0]), tuple(tuple(r) for r in lines[1:] if r[0] == "opt-1.3b")
    return TableSpec(
        header=header, rows=rows,
        bad_cells={"max_num_seqs": ("0", "x", "-4", "1.5"),
                   "total_token_throughput_tok_s": ("x", "-1", "nan", "inf"),
                   "num_preemptions_total": ("x", "-1"), "running_max": ("x", "-1"),
                   "kv_usage_peak_frac": ("x", "-0.5", "nan"),
                   "gpu_memory_utilization": ("x", "0", "1.5"),
                   "total_gpu_memory_gib": ("x", "0", "-1")},
        required=("model", "max_num_seqs", "total_token_throughput_tok_s",
                  "num_preemptions_total", "kv_usage_peak_frac", "gpu_memory_utilization"),
    )


def _profile_json() -> bytes:
    return (resources.files("loratwin") / "profile" / "bundled" / f"{MODEL}.json").read_bytes()


def _profile_spec() -> MappingSpec:
    base = json.loads(_profile_json())
    return MappingSpec(base=base, bad_values={
        "name": (5, None), "step": ("x", {}, None), "max_model_len": (0, "x", -1),
        "frontend_latency_s": ("x", -1.0), "profile_kind": ("guessed",),
    })


# ----------------------------------------------------------------------------- helpers


def _file_case(cmd: str, argv: tuple[str, ...], name: str, fixed: tuple[tuple[str, bytes], ...]
               = (), outputs: tuple[str, ...] = ()) -> Callable[[tuple[bytes, str]], Case]:
    """Case maker for a malformed file ``name`` among valid ``fixed`` files."""
    return lambda fw: Case(cmd, argv, ((name, fw[0]), *fixed), outputs, why=f"{name}: {fw[1]}")


def _flag_case(cmd: str, argv: tuple[str, ...], files: tuple[tuple[str, bytes], ...]
               ) -> Callable[[tuple[tuple[str, ...], str]], Case]:
    return lambda aw: Case(cmd, (*argv, *aw[0]), files, (), why=aw[1])


def _output_case(cmd: str, argv: tuple[str, ...], files: tuple[tuple[str, bytes], ...]
                 ) -> Callable[[tuple[tuple[str, ...], tuple[tuple[str, bytes], ...], str, str]],
                               Case]:
    return lambda o: Case(cmd, (*argv, *o[0]), (*files, *o[1]), (o[2],), why=o[3])


def _paths(cmd: str, argv_with: Callable[[str], tuple[str, ...]], kind: str = "file"
           ) -> st.SearchStrategy[Case]:
    """An input path that is missing, a folder (for a file) or a file (for a folder)."""
    cases = [Case(cmd, argv_with("missing.csv"), (), (), why="missing input")]
    if kind == "file":
        cases.append(Case(cmd, argv_with("adir"), (("adir/", b""),), (), why="input is a folder"))
    else:
        cases.append(Case(cmd, argv_with("afile"), (("afile", b"x\n"),), (),
                          why="input folder is a file"))
    return st.sampled_from(cases)


_PLACE_FLAGS = {"--gpus": ("0", "-1", "abc"), "--algorithm": ("nope", ""),
                "--jobs": ("0", "-2", "x"), "--duration": ("0", "-5", "nan", "inf", "x"),
                "--seed": ("-1", "x"), "--max-num-seqs": ("0", "-1"),
                "--arrival-cv": ("-1", "nan", "inf"), "--model": ("no-such-model",
                                                                  "missing.json"),
                "--surrogate": ("missing.npz",), "--max-ttft-ms": ("0", "-1", "nan"),
                "--max-itl-ms": ("0", "nan")}


_EMIT_CASES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("out", "--emit", "nope"), "--emit unknown format"),
    (("--emit", "kubernetes"), "--emit without OUT"),
    (("out",), "OUT without --emit"),
    (("afile", "--emit", "router"), "OUT is a file"),
    (("afile/out", "--emit", "litellm"), "OUT under a file"),
    (("out", "--emit", "kserve", "--name-prefix", "Bad_Name"), "--name-prefix not a DNS label"),
    (("out", "--emit", "kserve", "--adapter-uri-template", "s3://b/{nope}"),
     "--adapter-uri-template unknown field"),
    (("out", "--emit", "router", "--api-base-template", "http://{server"),
     "--api-base-template unclosed field"),
    (("out", "--emit", "kubernetes", "--adapter-uri-template", "s3://bucket/{adapter_id}"),
     "kubernetes cannot mount s3://"),
    (("out", "--emit", "kubernetes", "--adapter-uri-template", "pvc://claim-only"),
     "pvc:// without a path"),
)

# A small valid plan (``loratwin place --json``) and what breaks it for ``loratwin report``.
PLAN = MappingSpec(
    base={"gpus": 1, "algorithm": "loratwin", "placement_s": 0.1, "lower_bound": 1,
          "servers": [{"adapters": ["a", "b"], "ranks": [8, 16], "total_rate_req_s": 0.7,
                       "max_loras": 2, "max_cpu_loras": 2, "max_lora_rank": 16,
                       "max_num_seqs": 256, "predicted": {"total_throughput_tok_s": 100.0},
                       "verified": None, "rates_req_s": [0.5, 0.2],
                       "traffic_share": [1.0, 1.0]}],
          "profile": {"name": MODEL, "hf_model_name": "meta-llama/Llama-3.1-8B-Instruct",
                      "profile_kind": "measured"}},
    bad_values={"servers": ("x", [], 5, [1], [{"adapters": "ab", "ranks": [8]}],
                            [{"adapters": ["a"], "ranks": [8, 16]}],
                            [{"adapters": ["a"], "ranks": ["x"]}],
                            [{"adapters": ["a"], "ranks": [8], "predicted": 3}],
                            [{"adapters": ["a"], "ranks": [8], "verified": [1]}],
                            [{"adapters": ["a"], "ranks": [8], "verified": {
                                "timeseries": {"t_s": [1.0], "running": []}}}]),
                "profile": ("x", 3, [1]), "slo": ("x", [1])},
    unknown_key_bad=False,
)
PLAN_JSON = json.dumps(PLAN.base).encode()

# ----------------------------------------------------------------------------- commands


@command("place")
def _place() -> st.SearchStrategy[Case]:
    files = (("ad.csv", ADAPTERS_CSV),)
    base = ("place", "ad.csv", "--no-confirm")
    return st.one_of(
        bad_table(ADAPTERS).map(_file_case("place", (*base, "--json", "p.json"), "ad.csv",
                                           outputs=("p.json",))),
        bad_flag(_PLACE_FLAGS).map(_flag_case("place", base, files)),
        bad_output("--json", "p.json").map(_output_case("place", base, files)),
        st.just(Case("place", (*base, "--emit-vllm", "ad.csv"), files, (), "--emit-vllm a file")),
        st.sampled_from(_EMIT_CASES).map(lambda aw: Case(
            "place", (*base, *aw[0]), (*files, ("afile", b"x\n")), ("out",), aw[1])),
        st.just(Case("place", (*base, "--surrogate", "s.npz"), (*files, ("s.npz", b"junk")), (),
                     "--surrogate not a surrogate file")),
        _paths("place", lambda p: ("place", p)),
    )


@command("compare")
def _compare() -> st.SearchStrategy[Case]:
    files = (("ad.csv", ADAPTERS_CSV),)
    base = ("compare", "ad.csv", "--no-confirm", "--no-optimum", "--duration", "10")
    flags = {k: v for k, v in _PLACE_FLAGS.items() if k not in ("--gpus", "--algorithm",
                                                                 "--max-ttft-ms", "--max-itl-ms")}
    flags["--algorithms"] = ("nope", ",", "loratwin,nope")
    return st.one_of(
        bad_table(ADAPTERS).map(_file_case("compare", base, "ad.csv")),
        bad_flag(flags).map(_flag_case("compare", base, files)),
        bad_output("--json", "c.json").map(_output_case("compare", base, files)),
        st.just(Case("compare", (*base, "--plot", "c.txt"), files, ("c.txt",), "--plot suffix")),
    )


@command("simulate")
def _simulate() -> st.SearchStrategy[Case]:
    good = (("ad.csv", ADAPTERS_CSV), ("tr.csv", TRACE_CSV))
    cfg = (("c.yaml", SIM_YAML),)
    flags = {"--max-loras": ("0", "-1", "x"), "--max-cpu-loras": ("1",),
             "--max-lora-rank": ("8", "0"), "--max-num-seqs": ("0",),
             "--max-num-batched-tokens": ("0",), "--duration": ("0", "-1", "nan", "inf"),
             "--seed": ("-1", "1.5"), "--model": ("no-such-model",),
             "--trace": ("missing.csv",), "--adapters": ("missing.csv",)}
    return st.one_of(
        bad_mapping(SIM_CONFIG).map(_file_case("simulate", ("simulate", "c.yaml", "--json",
                                                            "o.json"), "c.yaml", good,
                                               ("o.json",))),
        bad_table(ADAPTERS).map(_file_case("simulate", ("simulate", "c.yaml"), "ad.csv", cfg)),
        bad_table(TRACE).map(_file_case("simulate", ("simulate", "c.yaml", "--trace", "tr.csv"),
                                        "tr.csv", (*cfg, good[0]))),
        bad_flag(flags).map(_flag_case("simulate", ("simulate", "c.yaml"), (*cfg, *good))),
        bad_output("--json", "o.json").map(_output_case("simulate", ("simulate", "c.yaml"),
                                                        (*cfg, *good))),
        st.sampled_from(("--requests-parquet", "--per-adapter-csv")).map(lambda f: Case(
            "simulate", ("simulate", "c.yaml", f, "out.txt"), (*cfg, *good), ("out.txt",),
            f"{f} wrong suffix")),
        _paths("simulate", lambda p: ("simulate", p)),
    )


@command("validate")
def _validate() -> st.SearchStrategy[Case]:
    files = (("runs.csv", REAL_RUNS_CSV),)
    base = ("validate", "runs.csv", "--model", MODEL, "--jobs", "1")
    return st.one_of(
        bad_table(REAL_RUNS).map(_file_case("validate", (*base, "--json", "v.json"), "runs.csv",
                                            outputs=("v.json",))),
        bad_flag({"--jobs": ("0", "-3"), "--seed": ("-1",), "--model": ("no-such-model",)}).map(
            _flag_case("validate", base, files)),
        bad_output("--json", "v.json").map(_output_case("validate", base, files)),
        _paths("validate", lambda p: ("validate", p, "--model", MODEL)),
    )


@command("dataset")
def _dataset() -> st.SearchStrategy[Case]:
    grid = (("grid.yaml", json.dumps(DESIGN.base).encode()),)
    base = ("dataset", "grid.yaml", "--out", "ds", "--max-chunks", "1")
    return st.one_of(
        bad_mapping(DESIGN).map(_file_case("dataset", base, "grid.yaml", outputs=("ds",))),
        bad_flag({"--jobs": ("0", "-2"), "--max-chunks": ("0", "-1"), "--chunks": ("0",),
                  "--model": ("no-such-model",)}).map(_flag_case("dataset", base, grid)),
        st.just(Case("dataset", ("dataset", "grid.yaml", "--out", "f"), (*grid, ("f", b"x")), (),
                     "--out is a file")),
        _paths("dataset", lambda p: ("dataset", p, "--out", "ds")),
    )


_CHUNK = (("ds/chunk-00000.parquet", b"PAR1 not really parquet"),)


@command("train")
def _train() -> st.SearchStrategy[Case]:
    return st.one_of(
        st.sampled_from((
            Case("train", ("train", "ds", "-o", "s.npz"), (("ds/", b""),), ("s.npz",),
                 "empty data set folder"),
            Case("train", ("train", "ds", "-o", "s.npz"), _CHUNK, ("s.npz",), "corrupt chunk"),
            Case("train", ("train", "ds", "-o", "s.txt"), (("ds/", b""),), ("s.txt",),
                 "-o suffix"),
        )),
        bad_flag({"--folds": ("1", "0", "x"), "--holdout": ("-0.1", "1.5", "nan"),
                  "--jobs": ("0",), "--chunks": ("0",), "--seed": ("-1",)}).map(
            _flag_case("train", ("train", "ds", "-o", "s.npz"), _CHUNK)),
        _paths("train", lambda p: ("train", p, "-o", "s.npz"), kind="dir"),
    )


@command("predict")
def _predict() -> st.SearchStrategy[Case]:
    files = (("f.csv", FEATURES_CSV),)
    return st.one_of(
        bad_table(FEATURES).map(_file_case("predict", ("predict", "f.csv", "--json", "p.json"),
                                           "f.csv", outputs=("p.json",))),
        bad_flag({"--model": ("no-such-model", "missing.npz"), "--max-rows": ("-1", "x")}).map(
            _flag_case("predict", ("predict", "f.csv"), files)),
        bad_output("--json", "p.json").map(_output_case("predict", ("predict", "f.csv"), files)),
        st.sampled_from(tuple(Case("predict", ("predict", "f.csv", "--model", "s.npz"),
                                   (*files, ("s.npz", b)), (), "garbage surrogate")
                              for b in (b"", b"PK\x03\x04junk", b"\x93NUMPY junk"))),
        _paths("predict", lambda p: ("predict", p)),
    )


@command("advise")
def _advise() -> st.SearchStrategy[Case]:
    sweep = _sweep_spec()
    files = (("sw.csv", render_csv([sweep.header, *sweep.rows])),)
    return st.one_of(
        bad_table(sweep).map(_file_case("advise", ("advise", "sw.csv", "--json", "a.json"),
                                        "sw.csv", outputs=("a.json",))),
        bad_mapping(TWIN_SWEEP).map(_file_case("advise", ("advise", "--twin", "t.yaml"),
                                               "t.yaml")),
        bad_flag({"--rule": ("z", ""), "--eps": ("-1", "x"), "--latency-factor": ("0", "-1"),
                  "--slo-ms": ("-5",), "--latency": ("p99",), "--batch-axis": ("sideways",),
                  "--ref-batch": ("0", "-1"), "--gpu-memory-gib": ("0", "-1", "nan"),
                  "--kv-headroom": ("-0.5", "nan")}).map(
            _flag_case("advise", ("advise", "sw.csv"), files)),
        bad_output("--json", "a.json").map(_output_case("advise", ("advise", "sw.csv"), files)),
        st.just(Case("advise", ("advise", "bundled:nope"), (), (), "unknown bundled sweep")),
        st.just(Case("advise", ("advise", "sw.csv", "--plot", "p.txt"), files, ("p.txt",),
                     "--plot suffix")),
    )


@command("profile fit")
def _profile_fit() -> st.SearchStrategy[Case]:
    return st.one_of(
        st.sampled_from((
            Case("profile fit", ("profile", "fit", "cal", "-o", "out"), (("cal/", b""),),
                 ("out",), "empty calibration folder"),
            Case("profile fit", ("profile", "fit", "cal", "-o", "out"),
                 (("cal/meta.json", b"{not json"),), ("out",), "corrupt meta.json"),
            Case("profile fit", ("profile", "fit", "cal", "-o", "f"),
                 (("cal/", b""), ("f", b"x")), (), "-o is a file"),
        )),
        bad_flag({"--jobs": ("0", "-4"), "--reference": ("no-such-model",)}).map(
            _flag_case("profile fit", ("profile", "fit", "cal", "-o", "out"), (("cal/", b""),))),
        _paths("profile fit", lambda p: ("profile", "fit", p, "-o", "out"), kind="dir"),
    )


@command("profile show")
def _profile_show() -> st.SearchStrategy[Case]:
    return st.one_of(
        bad_mapping(_profile_spec(), "json").map(
            _file_case("profile show", ("profile", "show", "p.json"), "p.json")),
        st.sampled_from((Case("profile show", ("profile", "show", "no-such-model"), (), (),
                              "unknown profile"),
                         Case("profile show", ("profile", "show", "missing.json"), (), (),
                              "missing profile file"))),
    )


_HF_CONFIG = MappingSpec(
    base={"architectures": ["LlamaForCausalLM"], "hidden_size": 256, "intermediate_size": 512,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "vocab_size": 32000, "max_position_embeddings": 2048, "torch_dtype": "bfloat16"},
    bad_values={"architectures": ("LlamaForCausalLM", ["FooForCausalLM"], [], 5),
                "hidden_size": (0, -1, "x", 2.5, True), "num_attention_heads": (0, 3, "x"),
                "num_key_value_heads": (3, -2, "x"), "num_hidden_layers": (0, None, 1.5),
                "intermediate_size": (0, "big"), "vocab_size": (0, -5),
                "max_position_embeddings": (0, "x"), "torch_dtype": ("int8", 16),
                "tie_word_embeddings": ("yes", 1)},
    unknown_key_bad=False,
)
_PRIOR_BASE = ("profile", "prior", "--hf-config", "config.json", "--gpu", "h200", "-o",
               "p.json")
_ADAPTER_CONFIG = MappingSpec(
    base={"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]},
    bad_values={"peft_type": ("PREFIX_TUNING", "IA3"),
                "target_modules": ([], 5, None, ["lm_head"], ["embed_tokens"], ["nope"], [1],
                                   "(", "^nothing$", "q_proj"),
                "layers_to_transform": (-1, 2, 99, "x", [1.5], [], True)},
    unknown_key_bad=False,
)


@command("profile prior")
def _profile_prior() -> st.SearchStrategy[Case]:
    cfg = (("config.json", json.dumps(_HF_CONFIG.base).encode()),)
    return st.one_of(
        bad_mapping(_HF_CONFIG, "json").map(
            _file_case("profile prior", _PRIOR_BASE, "config.json", (), ("p.json",))),
        bad_flag({"--gpu": ("h300", "", "H100"), "--tp": ("0", "-1", "3", "x", "1.5"),
                  "--dtype": ("int8", "fp8", ""),
                  "--calibrate-on": ("no-such-model", "missing.json", ","),
                  "--generation-config": ("missing.json",),
                  "--target-modules": ("lm_head", "", ",", "nope", "q_proj,embed_tokens"),
                  "--adapter-config": ("missing.json",)}).map(
            lambda aw: Case("profile prior", (*_PRIOR_BASE, *aw[0]), cfg, ("p.json",),
                            why=aw[1])),
        bad_mapping(_ADAPTER_CONFIG, "json").map(
            _file_case("profile prior", (*_PRIOR_BASE, "--adapter-config", "adapter_config.json"),
                       "adapter_config.json", cfg, ("p.json",))),
        bad_output("-o", "p.json").map(
            _output_case("profile prior", _PRIOR_BASE[:-2], cfg)),
        st.sampled_from((
            Case("profile prior", ("profile", "prior", "--hf-config", "no-such-model",
                                   "--gpu", "h200", "-o", "p.json"), (), ("p.json",),
                 "unknown bundled model"),
            Case("profile prior", ("profile", "prior", "--hf-config", "missing.json",
                                   "--gpu", "h200", "-o", "p.json"), (), ("p.json",),
                 "missing config.json"),
            Case("profile prior", (*_PRIOR_BASE[:-1], "p.txt"), cfg, ("p.txt",), "-o suffix"),
            Case("profile prior", ("profile", "prior", "--hf-config", "opt-1.3b", "--gpu",
                                   "l40s", "--tp", "3", "-o", "p.json"), (), ("p.json",),
                 "tp does not divide the heads"),
        )),
    )


@command("profile calibrate-serving")
def _calibrate_serving() -> st.SearchStrategy[Case]:
    files = (("runs.csv", REAL_RUNS_CSV), ("cal/", b""))
    base = ("profile", "calibrate-serving", "runs.csv", "--calibration", "cal", "-o", "c.json")
    return st.one_of(
        bad_table(REAL_RUNS).map(_file_case("profile calibrate-serving", base, "runs.csv",
                                            (("cal/", b""),), ("c.json",))),
        bad_flag({"--eager-grid-us": ("x", "", "-5", "1,nan"),
                  "--fraction-grid": ("y", "1.5", "-0.1"), "--jobs": ("0",)}).map(
            _flag_case("profile calibrate-serving", base, files)),
        st.just(Case("profile calibrate-serving", (*base[:-1], "c.txt"), files, ("c.txt",),
                     "-o suffix")),
        st.just(Case("profile calibrate-serving", base, (("runs.csv", REAL_RUNS_CSV),),
                     ("c.json",), "missing calibration folder")),
    )


@command("workload from-trace")
def _from_trace() -> st.SearchStrategy[Case]:
    files = (("az.csv", AZURE_CSV),)
    base = ("workload", "from-trace", "az.csv", "-n", "3", "-o", "w.csv")
    return st.one_of(
        bad_table(AZURE).map(_file_case("workload from-trace", base, "az.csv",
                                        outputs=("w.csv",))),
        bad_flag({"-n": ("0", "-1", "x"), "--seed": ("-1", "x"), "--ranks": ("0", "8,x", "", ","),
                  "--rate-multiplier": ("0", "-1", "nan", "inf"), "--alpha": ("0", "-1", "nan"),
                  "--rank-order": ("sorted",)}).map(
            lambda aw: Case("workload from-trace", (*base, *aw[0]), files, ("w.csv",), aw[1])),
        bad_output("-o", "w.csv").map(_output_case("workload from-trace", base[:-2], files)),
        st.just(Case("workload from-trace", (*base[:-1], "w.txt"), files, ("w.txt",),
                     "-o suffix")),
        st.just(Case("workload from-trace", ("workload", "from-trace", "azure-nope", "-n", "3",
                                             "-o", "w.csv"), (), ("w.csv",), "unknown trace")),
    )


@command("surrogate evaluate")
def _surrogate_evaluate() -> st.SearchStrategy[Case]:
    return st.one_of(
        st.sampled_from((
            Case("surrogate evaluate", ("surrogate", "evaluate", "ds"), (("ds/", b""),), (),
                 "empty data set folder"),
            Case("surrogate evaluate", ("surrogate", "evaluate", "ds"), _CHUNK, (),
                 "corrupt chunk"),
        )),
        bad_flag({"--model": ("no-such-model", "missing.npz")}).map(
            _flag_case("surrogate evaluate", ("surrogate", "evaluate", "ds"), _CHUNK)),
        _paths("surrogate evaluate", lambda p: ("surrogate", "evaluate", p), kind="dir"),
    )


@command("surrogate evaluate-real")
def _surrogate_evaluate_real() -> st.SearchStrategy[Case]:
    files = (("runs.csv", REAL_RUNS_CSV),)
    base = ("surrogate", "evaluate-real", "runs.csv")
    return st.one_of(
        bad_table(REAL_RUNS).map(_file_case("surrogate evaluate-real", (*base, "--json", "e.json"),
                                            "runs.csv", outputs=("e.json",))),
        bad_flag({"--model": ("no-such-model",), "--surrogate": ("missing.npz",)}).map(
            _flag_case("surrogate evaluate-real", base, files)),
        bad_output("--json", "e.json").map(_output_case("surrogate evaluate-real", base, files)),
    )


@command("surrogate show")
def _surrogate_show() -> st.SearchStrategy[Case]:
    return st.sampled_from(tuple(
        Case("surrogate show", ("surrogate", "show", "--model", m), files, (), why)
        for m, files, why in (
            ("no-such-model", (), "unknown surrogate"), ("missing.npz", (), "missing file"),
            ("s.npz", (("s.npz", b"junk"),), "not an npz"),
            ("s.npz", (("s.npz", b"PK\x05\x06" + b"\x00" * 18),), "empty zip"),
            ("d.npz", (("d.npz/", b""),), "a folder"),
        )))


@command("surrogate rebuild")
def _surrogate_rebuild() -> st.SearchStrategy[Case]:
    return st.sampled_from((
        Case("surrogate rebuild", ("surrogate", "rebuild", "--model", "no-such-model"), (), (),
             "unknown model"),
        Case("surrogate rebuild", ("surrogate", "rebuild", "--model", MODEL, "--chunks", "0"),
             (), (), "--chunks 0"),
        Case("surrogate rebuild", ("surrogate", "rebuild", "--model", MODEL, "--jobs", "0"),
             (), (), "--jobs 0"),
        Case("surrogate rebuild", ("surrogate", "rebuild", "--model", MODEL, "-o", "s.txt"),
             (), ("s.txt",), "-o suffix"),
        Case("surrogate rebuild", ("surrogate", "rebuild", "--model", MODEL, "--data", "f"),
             (("f", b"x"),), (), "--data a file"),
        Case("surrogate rebuild", ("surrogate", "rebuild", "--model", MODEL, "--grid", "g.yaml"),
             (("g.yaml", b"chunk_size: 0\n"),), (), "bad grid"),
    ))


@command("surrogate universal")
def _surrogate_universal() -> st.SearchStrategy[Case]:
    base = ("surrogate", "universal")
    return st.sampled_from((
        Case("surrogate universal", (*base, "--jobs", "0"), (), (), "--jobs 0"),
        Case("surrogate universal", (*base, "--seed", "-1"), (), (), "--seed -1"),
        Case("surrogate universal", (*base, "-o", "u.txt"), (), ("u.txt",), "-o suffix"),
        Case("surrogate universal", (*base, "--data", "f"), (("f", b"x"),), (),
             "--data a file"),
    ))


BENCH_CONFIG = MappingSpec(
    base={"adapters": "ad.csv", "lengths": {"kind": "fixed", "input_tokens": 8,
                                            "output_tokens": 4}, "duration_s": 5, "seed": 0},
    bad_values={"adapters": ("missing.csv", 7, []), "duration_s": (0, -5, "x", float("nan")),
                "seed": (-1, "x", 1.5), "lengths": ("fixed", {"kind": "nope"}),
                "lengths.input_tokens": (0, -1, "x"), "arrivals": ({"process": "nope"},),
                "server.max_loras": (0, "x"), "bogus": (1,)},
)
#: Nothing listens on the discard port: a valid URL whose server is down.
DOWN_URL = "http://127.0.0.1:9"


@command("bench")
def _bench() -> st.SearchStrategy[Case]:
    good = (("ad.csv", ADAPTERS_CSV),)
    cfg = (("w.yaml", json.dumps(BENCH_CONFIG.base).encode()),)
    base = ("bench", "w.yaml", "--url", DOWN_URL, "--out", "o")
    flags = {"--duration": ("0", "-1", "nan", "inf", "x"), "--seed": ("-1", "x"),
             "--max-loras": ("0", "x"), "--max-cpu-loras": ("0",), "--max-lora-rank": ("0",),
             "--max-num-seqs": ("0", "-3"), "--max-num-batched-tokens": ("0",),
             "--max-concurrency": ("0", "-1"), "--max-requests": ("0",),
             "--scrape-interval": ("0", "-1", "nan"), "--arrivals": ("nope",),
             "--cv": ("0", "-1", "nan"), "--model": ("no-such-model",)}
    url_cases = tuple(
        Case("bench", ("bench", "w.yaml", *argv, "--out", "o"), (*cfg, *good), ("o",), why)
        for argv, why in (
            ((), "neither --url nor --launch"),
            (("--url", "localhost:8000"), "--url without scheme"),
            (("--url", "ftp://127.0.0.1:1"), "--url not http"),
            (("--url", "http://h:99999"), "--url bad port"),
            (("--url", DOWN_URL, "--launch", "vllm serve m"), "both --url and --launch"),
            (("--url", DOWN_URL), "server down"),
            (("--launch", "vllm serve 'unclosed"), "--launch unbalanced quote"),
            (("--launch", " "), "--launch empty"),
            (("--launch", "/nonexistent/vllm serve m"), "--launch program missing"),
            (("--launch", "vllm serve m --max-loras many"), "--launch flag not an integer"),
            (("--launch", "vllm serve m", "--env", "NOEQUALS"), "--env without ="),
        ))
    return st.one_of(
        bad_mapping(BENCH_CONFIG).map(_file_case("bench", base, "w.yaml", good, ("o",))),
        bad_table(ADAPTERS).map(_file_case("bench", ("bench", "ad.csv", "--url", DOWN_URL,
                                                     "--out", "o"), "ad.csv", (), ("o",))),
        bad_table(TRACE).map(_file_case("bench", ("bench", "tr.csv", "--url", DOWN_URL,
                                                  "--out", "o"), "tr.csv", (), ("o",))),
        bad_flag(flags).map(_flag_case("bench", base, (*cfg, *good))),
        st.sampled_from(url_cases),
        st.just(Case("bench", ("bench", "w.yaml", "--url", DOWN_URL, "--out", "f"),
                     (*cfg, *good, ("f", b"x")), (), "--out is a file")),
        _paths("bench", lambda p: ("bench", p, "--url", DOWN_URL)),
    )


@command("profile collect")
def _profile_collect() -> st.SearchStrategy[Case]:
    # Nothing listens at DOWN_URL: every case is refused before any measurement.
    base = ("profile", "collect", "-o", "o", "--url", DOWN_URL)
    flags = {"--budget": ("0", "-1", "nan", "inf", "x"), "--point-seconds": ("0", "-2", "nan"),
             "--seed": ("-1", "x"), "--device": ("nope", ""), "--max-num-seqs": ("0", "-1"),
             "--max-num-batched-tokens": ("0",), "--max-cpu-loras": ("0",),
             "--max-lora-rank": ("0", "x"), "--max-loras-grid": ("x", "0", "", "4,,1", "-1"),
             "--gpu-memory-gib": ("0", "-8", "nan"), "--startup-timeout": ("0", "-1"),
             "--hf-config": ("missing.json", "adir")}
    target_cases = tuple(
        Case("profile collect", ("profile", "collect", "-o", "o", *argv), files, ("o",), why)
        for argv, files, why in (
            ((), (), "neither --url nor --launch"),
            (("--url", DOWN_URL, "--launch", "vllm serve m"), (), "both --url and --launch"),
            (("--url", "localhost:8000"), (), "--url without scheme"),
            (("--url", "ftp://127.0.0.1:1"), (), "--url not http"),
            (("--url", DOWN_URL), (), "server down"),
            (("--launch", "vllm serve 'unclosed"), (), "--launch unbalanced quote"),
            (("--launch", " "), (), "--launch empty"),
            (("--launch", "vllm serve m"), (), "--launch without --lora-modules"),
            (("--launch", "vllm serve m --lora-modules a=p", "--env", "NOEQUALS"), (),
             "--env without ="),
            (("--url", DOWN_URL, "--hf-config", "cfg.json"), (("cfg.json", b"{nope"),),
             "server down, config not JSON"),
        ))
    return st.one_of(
        bad_flag(flags).map(_flag_case("profile collect", base, (("adir/", b""),))),
        st.sampled_from(target_cases),
        st.sampled_from((
            Case("profile collect", ("profile", "collect", "-o", "f", "--url", DOWN_URL),
                 (("f", b"x"),), (), "--out is a file"),
            Case("profile collect", ("profile", "collect", "-o", "f/o", "--url", DOWN_URL),
                 (("f", b"x"),), (), "--out under a file"))),
    )


@command("(top level)")
def _top_level() -> st.SearchStrategy[Case]:
    return st.sampled_from(tuple(
        Case("(top level)", argv, (), (), why) for argv, why in (
            (("nosuchcommand",), "unknown command"), (("--bogus",), "unknown flag"),
            (("profile", "nope"), "unknown subcommand"),
            (("workload", "from-trace", "--bogus"), "unknown flag in a group"),
        )))


@command("report")
def _report() -> st.SearchStrategy[Case]:
    files = (("plan.json", PLAN_JSON),)
    base = ("report", "plan.json", "-o", "r.html")
    return st.one_of(
        bad_mapping(PLAN, "json").map(_file_case("report", base, "plan.json",
                                                 outputs=("r.html",))),
        bad_flag({"--out": ("r.txt", "r")}).map(_flag_case("report", ("report", "plan.json"),
                                                           files)),
        bad_output("-o", "r.html").map(_output_case("report", ("report", "plan.json"), files)),
        _paths("report", lambda p: ("report", p, "-o", "r.html")),
    )


# ----------------------------------------------------------------------------- replan (issue 15)

REPLAN = MappingSpec(
    base={"model": MODEL, "gpus": 1, "servers": [
        {"name": "gpu-0", "adapters": ["a", "b", "c"], "ranks": [8, 16, 8],
         "traffic_share": [1.0, 1.0, 1.0], "rates_req_s": [0.5, 0.2, 0.1], "max_loras": 3,
         "max_cpu_loras": 3, "max_lora_rank": 16, "max_num_seqs": 2048}]},
    bad_values={"model": ("qwen-2.5-7b-instruct", 5, "no-such-model"),
                "servers": ("x", [], [1], [{"adapters": []}],
                            [{"adapters": ["a"], "ranks": [8, 8], "max_loras": 1}],
                            [{"adapters": ["a", "a"], "ranks": [8, 8], "max_loras": 1}],
                            [{"adapters": ["a"], "ranks": [8], "max_loras": 0}],
                            [{"adapters": ["a"], "ranks": [8], "max_loras": 1,
                              "traffic_share": [2.0]}],
                            [{"adapters": ["a"], "ranks": [8], "max_loras": 4000,
                              "max_lora_rank": 64}],
                            [{"adapters": ["z1", "z2"], "ranks": [8, 8], "max_loras": 2}])},
    unknown_key_bad=False,
)
REPLAN_JSON = json.dumps(REPLAN.base).encode()
PROM = (b"# scrape_time_s 100\n# TYPE vllm:request_success_total counter\n"
        b"vllm:request_success_total 5\n")


@command("replan")
def _replan() -> st.SearchStrategy[Case]:
    files = (("cur.json", REPLAN_JSON), ("ad.csv", ADAPTERS_CSV))
    base = ("replan", "cur.json", "ad.csv", "--no-confirm", "--model", MODEL)
    flags = {"--extra-gpus": ("-1", "x"), "--max-moves": ("-1", "x"), "--move-cost": ("0", "-1",
                                                                                       "nan"),
             "--scrapes": ("1", "0"), "--scrape-interval": ("0", "-1", "nan"),
             "--seed": ("-1",), "--duration": ("0", "nan"), "--jobs": ("0",),
             "--max-num-seqs": ("0",), "--arrival-cv": ("0", "-1"), "--max-ttft-ms": ("0",),
             "--model": ("no-such-model", "qwen-2.5-7b-instruct"),
             "--rates-from-metrics": ("missing.csv",)}
    return st.one_of(
        bad_mapping(REPLAN, "json").map(_file_case("replan", (*base, "-o", "n.json"), "cur.json",
                                                 (("ad.csv", ADAPTERS_CSV),), ("n.json",))),
        bad_table(ADAPTERS).map(_file_case("replan", (*base, "-o", "n.json"), "ad.csv",
                                           (("cur.json", REPLAN_JSON),), ("n.json",))),
        bad_table(TRACE).map(_file_case("replan", (*base, "--rates-from-metrics", "log.csv"),
                                        "log.csv", files)),
        bad_flag(flags).map(_flag_case("replan", base, files)),
        bad_output("-o", "n.json").map(_output_case("replan", base, files)),
        st.sampled_from((
            Case("replan", (*base, "--max-moves", "3", "--move-cost", "1"), files, (),
                 "--max-moves with --move-cost"),
            Case("replan", (*base, "--rates-from-metrics", "m.prom"), (*files, ("m.prom", PROM)),
                 (), "one Prometheus scrape"),
            Case("replan", (*base, "--rates-from-metrics", "m.prom"),
                 (*files, ("m.prom", b"# TYPE x counter\nx_total 1\n")), (),
                 "not the metrics of a vLLM server"),
        )),
        _paths("replan", lambda p: ("replan", p, "ad.csv", "--no-confirm")),
    )


@command("workload drift")
def _drift() -> st.SearchStrategy[Case]:
    files = (("old.csv", ADAPTERS_CSV), ("new.csv", ADAPTERS_CSV))
    base = ("workload", "drift", "old.csv", "new.csv")
    return st.one_of(
        bad_table(ADAPTERS).map(_file_case("workload drift", (*base, "--json", "d.json"),
                                           "new.csv", (("old.csv", ADAPTERS_CSV),),
                                           ("d.json",))),
        bad_flag({"--tolerance": ("-1", "nan", "x"), "--top": ("x",)}).map(
            _flag_case("workload drift", base, files)),
        bad_output("--json", "d.json").map(_output_case("workload drift", base, files)),
        _paths("workload drift", lambda p: ("workload", "drift", p, "new.csv")),
    )


@command("place --gpu-types")
def _place_gpu_types() -> st.SearchStrategy[Case]:
    files = (("ad.csv", ADAPTERS_CSV),)
    base = ("place", "ad.csv", "--no-confirm", "--gpu-types", "H100=3")
    flags = {"--gpu-types": ("H100", "H100=", "=3", "H100=-1", "H100=x", "H100=3:0", "H200=3",
                             "H100=4"),
             "--gpu-profile": ("H200=foo.json", "H100=", "H100=no-such-model",
                               "H100=qwen-2.5-7b-instruct"),
             "--gpu-surrogate": ("H200=s.npz", "H100=missing.npz", "H100=no-such-word"),
             "--surrogate": ("s.npz", "llama-3.1-8b-instruct"),
             "--gpus": ("3",), "--algorithm": ("paper-greedy",), "--advise": (),
             "--seed": ("-1",)}
    return st.one_of(
        bad_flag(flags).map(_flag_case("place --gpu-types", base, files)),
        bad_output("--json", "f.json").map(_output_case("place --gpu-types", base, files)),
        st.just(Case("place --gpu-types", (*base, "--advise"), files, (), "--advise")),
        st.just(Case("place --gpu-types", (*base, "--emit-vllm", "serve"), files, ("serve",),
                     "--emit-vllm")),
    )
