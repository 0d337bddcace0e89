"""The ablation's plan and table: which runs it trains, in which order, and how seeds are pooled per row."""

import argparse

from clipping_edge.benchmarks.ablation import SUITES, VARIANTS, Run, planned_runs, table

COLUMNS = SUITES["synthetic"].columns


def plan_args(**overrides) -> argparse.Namespace:
    args = {"suite": "synthetic", "seeds": [0, 1], "methods": ["clip", "clip-ping"], "recipes": ["basic"],
            "variants": ["lambda-0.25"], "inits": ["scratch"], "data": "d", "student": "test-tiny", "epochs": 1,
            "batch_size": 8, "teacher_image_size": 64, "workers": 0, "logit_scale": None}
    return argparse.Namespace(**{**args, **overrides})


def test_plan_is_seed_major_and_variants_change_one_setting(tmp_path):
    runs = planned_runs(plan_args())
    assert [r.name for r in runs] == ["clip-basic-s0", "clip-ping-basic-s0", "clip-ping-basic-lambda-0.25-s0",
                                           "clip-basic-s1", "clip-ping-basic-s1", "clip-ping-basic-lambda-0.25-s1"]
    default, variant = (r.config(plan_args(), tmp_path) for r in runs[1:3])
    changed = {k for k, v in vars(variant).items() if vars(default)[k] != v}
    assert changed == set(VARIANTS["lambda-0.25"])
    teacher = Run("clip-ping", "basic", 0, "teacher-128px").config(plan_args(), tmp_path)
    assert teacher.teacher_image_size == 128 and default.teacher_image_size == 64


def test_real_suite_compares_inits_with_everything_else_equal(tmp_path):
    args = plan_args(suite="real", inits=["pretrained", "scratch"], variants=[], seeds=[0], student="effnet-minilm",
                     teacher_image_size=None)
    runs = planned_runs(args)
    assert [r.name for r in runs] == ["clip-basic-pretrained-s0", "clip-ping-basic-pretrained-s0", "clip-basic-s0",
                                      "clip-ping-basic-s0"]
    pretrained, scratch = runs[1].config(args, tmp_path), runs[3].config(args, tmp_path)
    assert pretrained.lock_image and pretrained.unlocked_text_blocks == 2 and pretrained.student == "effnet-minilm"
    assert not scratch.lock_image and scratch.student == "effnet-minilm-scratch"
    assert (pretrained.epochs, pretrained.data, pretrained.method) == (scratch.epochs, scratch.data, scratch.method)


def test_variants_change_one_setting_of_each_chosen_init(tmp_path):
    args = plan_args(suite="real", inits=["locked"], methods=["clip-ping"], variants=["lambda-0.25"], seeds=[0],
                     student="effnet-minilm", teacher_image_size=None)
    default, variant = planned_runs(args)
    assert variant.name == "clip-ping-basic-locked-lambda-0.25-s0"
    a, b = default.config(args, tmp_path), variant.config(args, tmp_path)
    assert b.lock_image and b.lock_text  # the locked init, not the scratch student
    assert {k for k, v in vars(b).items() if vars(a)[k] != v} == set(VARIANTS["lambda-0.25"])
    assert a.logit_scale == 0.0  # learned unless asked
    fixed = default.config(plan_args(**{**vars(args), "logit_scale": 7.0}), tmp_path)
    assert {k for k, v in vars(fixed).items() if vars(a)[k] != v} == {"logit_scale"} and fixed.logit_scale == 7.0


def result(method: str, variant: str, seed: int, top1: float) -> dict:
    metrics = {ev: {key: top1 for _, key, _ in COLUMNS} for ev, _, _ in COLUMNS}
    return {"method": method, "recipe": "basic", "variant": variant, "seed": seed, "metrics": metrics,
            "train_seconds": 60.0 * (seed + 1)}


def test_table_pools_seeds_per_row_and_keeps_variants_apart():
    rows = table([result("clip", "", 0, 0.10), result("clip", "", 1, 0.20), result("clip-ping", "", 0, 0.30),
                  result("clip-ping", "lambda-0.25", 0, 0.50)], SUITES["synthetic"]).splitlines()
    clip = next(line for line in rows if line.startswith("| clip | basic | scratch | defaults"))
    assert "| 2 | 15.0 ± 7.1 |" in clip and clip.endswith("| 1.5 |")
    assert any(line.startswith("| clip-ping | basic | scratch | defaults | 1 | 30.0 |") for line in rows)
    assert any(line.startswith("| clip-ping | basic | scratch | lambda-0.25 | 1 | 50.0 |") for line in rows)
    assert "of 0, 1;" in rows[-1]
