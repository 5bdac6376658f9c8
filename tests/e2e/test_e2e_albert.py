"""ALBERT-style fine-tuning (fixtures/albert): CPU reference, golden migration, checklist, emulated-NPU runs
(single device, auto mode, 2-rank hccl through the generated launcher, fp16)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from e2e_support import (
    ALBERT,
    ALBERT_STEPS,
    EMULATOR_ENV,
    PYTHON,
    Construct,
    Run,
    Untouched,
    albert_args,
    assert_finite,
    check_construct,
    check_untouched,
    compare_or_update_golden,
    free_port,
    migrate,
    read_records,
    read_rows,
    run_process,
    transplant_run,
)

pytestmark = pytest.mark.slow

ORIGINAL = ALBERT / "original"

# Every CUDA construct of the original (corpus.md §9.2, as reproduced in fixtures/albert/original).
CHECKLIST = [
    # apex amp, imported lazily under `if args.fp16:` (issue 6 rewrites it to native torch.amp)
    Construct("run_classifier.py", "from apex import amp", "migrated_or_reported", result=r"", op="apex"),
    Construct("run_classifier.py", "amp.initialize(model, optimizer", "migrated_or_reported",
              result=r"GradScaler\(", op="apex"),
    Construct("run_classifier.py", "amp.scale_loss(loss, optimizer)", "migrated_or_reported",
              result=r"\.scale\(loss\)\.backward\(\)", op="apex"),
    # clipping: unscale_ before the clip, or (per micro-step) a threshold scaled by the loss scale
    Construct("run_classifier.py", "amp.master_params(optimizer)", "migrated_or_reported",
              result=r"unscale_\(optimizer\)|max_grad_norm \* scaler\.get_scale\(\)", op="apex"),
    # devices, device queries, backend
    Construct("run_classifier.py", "if 'cuda' in str(args.device):", "migrated",
              result=r"if 'npu' in str\(args\.device\):", why="device-type test on a str(device)"),
    Construct("run_classifier.py", "torch.cuda.empty_cache()", "migrated",
              result=r"torch(_npu)?\.npu\.empty_cache\(\)"),
    Construct("run_classifier.py", '"cuda" if torch.cuda.is_available()', "migrated",
              result=r'torch\.device\("npu" if torch(_npu)?\.npu\.is_available\(\) and not args\.no_cuda else "cpu"\)'),
    Construct("run_classifier.py", "torch.cuda.device_count()", "migrated",
              result=r"torch(_npu)?\.npu\.device_count\(\)"),
    Construct("run_classifier.py", "torch.cuda.set_device(args.local_rank)", "migrated",
              result=r"torch(_npu)?\.npu\.set_device\(args\.local_rank\)"),
    Construct("run_classifier.py", 'torch.device("cuda", args.local_rank)', "migrated",
              result=r'torch\.device\("npu", args\.local_rank\)'),
    Construct("run_classifier.py", "init_process_group(backend='nccl')", "migrated",
              result=r"init_process_group\(backend='hccl'\)"),
    # an 8-NPU host: DataParallel over several NPUs is unsupported, so one NPU and n_gpu == 1 (issue 10)
    Construct("run_classifier.py", "model = torch.nn.DataParallel(model)", "migrated",
              result=r"torch\.nn\.DataParallel\(model, device_ids=\[torch\.npu\.current_device\(\)\]\)",
              why="DataParallel over several NPUs is not supported on Ascend (n_gpu > 1)"),
    Construct("run_classifier.py", "args.n_gpu = torch.cuda.device_count()", "migrated",
              result=r"args\.n_gpu = min\(1, torch\.npu\.device_count\(\)\)"),
    # torch.distributed.launch passes --local_rank; torchrun and the launcher set only LOCAL_RANK
    Construct("run_classifier.py", 'parser.add_argument("--local_rank", type=int, default=-1,', "migrated",
              result=r"default=int\(os\.environ\.get\('LOCAL_RANK', -1\)\)"),
    # tools/common.py helpers (seeding is live; prepare_device/model_device are dead code for the trainer)
    Construct("tools/common.py", "torch.cuda.manual_seed(seed)", "migrated",
              result=r"torch(_npu)?\.npu\.manual_seed\(seed\)"),
    Construct("tools/common.py", "torch.cuda.manual_seed_all(seed)", "migrated",
              result=r"torch(_npu)?\.npu\.manual_seed_all\(seed\)"),
    Construct("tools/common.py", "torch.backends.cudnn.deterministic", "reported", op="cudnn"),
    Construct("tools/common.py", 'f"cuda:{n_gpu_use[0]}"', "migrated", result=r'f"npu:\{n_gpu_use\[0\]\}"',
              why="an f-string device that reaches torch.device through a variable"),
    Construct("tools/common.py", "torch.cuda.device_count()", "migrated",
              result=r"torch(_npu)?\.npu\.device_count\(\)"),
    Construct("tools/common.py", "torch.nn.DataParallel(model, device_ids=device_ids)", "reported",
              op="DataParallel"),
    Construct("tools/common.py", "os.environ['CUDA_VISIBLE_DEVICES']", "migrated_or_reported",
              result=r"ASCEND_RT_VISIBLE_DEVICES", op="CUDA_VISIBLE_DEVICES"),
]

UNTOUCHED = [
    Untouched("run_classifier.py", '"--no_cuda"', "a CLI flag"),
    Untouched("run_classifier.py", 'help="Avoid using CUDA when available"', "help text"),
    Untouched("run_classifier.py", "not args.no_cuda", "a user attribute"),
    Untouched("run_classifier.py", "(through NVIDIA apex)", "help text"),
    Untouched("run_classifier.py", "# Setup CUDA, GPU & distributed training", "a comment"),
    Untouched("run_classifier.py", "device_ids=[args.local_rank]", "DDP arguments are valid on NPU"),
    Untouched("run_classifier.py", "args.per_gpu_train_batch_size * max(1, args.n_gpu)", "user arithmetic"),
    Untouched("model/modeling_utils.py", "torch.load(archive_file, map_location='cpu')", "an explicit CPU load"),
    Untouched("model/modeling_albert.py", "device=input_ids.device", "device-agnostic"),
    Untouched("tools/common.py", "device_type = 'cpu'", "the CPU fallback"),
    Untouched("tools/common.py", "# some cudnn methods can be random even after fixing the seed", "a comment"),
]


def _falls(losses: list[float]) -> bool:
    return float(np.mean(losses[-5:])) < float(np.mean(losses[:5])) - 0.05


# ---------------------------------------------------------------------------------------------
# Reference: the original on the CPU


def test_original_trains_on_cpu(albert_cpu: Run, albert_work: Path) -> None:
    assert len(albert_cpu.losses) == ALBERT_STEPS
    assert_finite(albert_cpu.losses)
    assert set(albert_cpu.field("device")) == {"cpu"}
    assert _falls(albert_cpu.losses), albert_cpu.losses
    # run_classifier appends the model type to --output_dir without a separator (ours ends in "/")
    output_dir = albert_work / "cpu" / "albert"
    assert (output_dir / "checkpoint-10" / "pytorch_model.bin").is_file()
    assert (output_dir / "pytorch_model.bin").is_file()
    assert re.search(r"^acc = ", (output_dir / "eval_results.txt").read_text(), re.M)
    cached = sorted(p.name for p in (albert_work / "fake" / "dataset" / "sst-2").glob("cached_*"))
    assert cached == ["cached_dev_albert_tiny_32_sst-2", "cached_train_albert_tiny_32_sst-2"]


# ---------------------------------------------------------------------------------------------
# Static migration: golden output, checklist, launcher


def test_migration_matches_golden(albert_migrated: Path, update_golden: bool) -> None:
    compare_or_update_golden(albert_migrated, ALBERT / "expected_npu", update_golden)


@pytest.mark.parametrize("item", CHECKLIST, ids=lambda item: item.id)
def test_cuda_construct_migrated_or_reported(item: Construct, albert_migrated: Path) -> None:
    problems = check_construct(item, ORIGINAL, albert_migrated)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("item", UNTOUCHED, ids=lambda item: f"{item.file}:{item.text}")
def test_non_device_code_untouched(item: Untouched, albert_migrated: Path) -> None:
    problems = check_untouched(item, ORIGINAL, albert_migrated)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", ["run_classifier.py", "tools/common.py"])
def test_files_using_the_npu_import_torch_npu(name: str, albert_migrated: Path) -> None:
    assert re.search(r"^import torch_npu$", (albert_migrated / name).read_text(), re.M)


def test_launcher_targets_the_trainer(albert_migrated: Path) -> None:
    script = albert_migrated / "run_distributed_npu.sh"
    assert os.access(script, os.X_OK)
    assert re.search(r"^default_entry=['\"]?run_classifier\.py['\"]?$", script.read_text(), re.M)


def test_second_migration_changes_nothing(tmp_path: Path) -> None:
    """Migrating the migrated code again is a no-op: every Python file comes back byte for byte."""
    golden = ALBERT / "expected_npu"
    done = migrate(golden, tmp_path / "again")
    assert done.returncode == 0, done.stdout + done.stderr
    assert read_rows(tmp_path / "again" / "change_list.csv") == []
    for source in golden.rglob("*.py"):
        rel = source.relative_to(golden)
        assert (tmp_path / "again" / rel).read_bytes() == source.read_bytes(), rel


# ---------------------------------------------------------------------------------------------
# Runs on the emulated NPU


@pytest.fixture(scope="module")
def albert_static(albert_migrated: Path, albert_work: Path, albert_cpu: Run) -> Run:
    """The migrated trainer under ``transplant run --strict-cuda`` (after the CPU run wrote the caches)."""
    args, loss_log = albert_args(albert_work, "static")
    run = transplant_run(args, cwd=albert_migrated, env=EMULATOR_ENV, loss_log=loss_log, strict_cuda=True)
    assert run.returncode == 0, run.describe()
    return run


def test_static_migration_trains_on_emulated_npu(albert_static: Run, albert_cpu: Run) -> None:
    assert set(albert_static.field("device")) == {"npu:0"}
    assert_finite(albert_static.losses)
    # Embedding, linear, matmul attention, softmax, LayerNorm, AdamW: the emulator computes these
    # with the CPU kernels, so every loss and the final weights are identical, bit for bit.
    assert albert_static.losses == albert_cpu.losses
    assert albert_static.field("final_param_sha256") == albert_cpu.field("final_param_sha256")


def test_static_migration_trains_on_eight_npu_host(albert_migrated: Path, albert_work: Path,
                                                    albert_static: Run) -> None:
    """On an (emulated) 8-NPU host the migrated default command trains on one NPU: the original's
    ``n_gpu > 1`` DataParallel would die there, and n_gpu-derived batch sizes would be 8x."""
    args, loss_log = albert_args(albert_work, "npu8")
    env = dict(EMULATOR_ENV, TRANSPLANT_NPU_COUNT="8")
    run = transplant_run(args, cwd=albert_migrated, env=env, loss_log=loss_log, strict_cuda=True)
    assert run.returncode == 0, run.describe()
    assert set(run.field("device")) == {"npu:0"}
    assert "n_gpu: 1," in run.stderr + run.stdout, run.describe()
    # same batches as on one NPU (train_batch_size = per_gpu * max(1, n_gpu)): the same training
    assert run.losses == albert_static.losses
    assert run.field("final_param_sha256") == albert_static.field("final_param_sha256")


def test_auto_mode_matches_static(albert_static: Run, albert_work: Path) -> None:
    """The unmodified original with TRANSPLANT_AUTO=1 on the emulator trains like the migrated code."""
    args, loss_log = albert_args(albert_work, "auto")
    env = dict(EMULATOR_ENV, TRANSPLANT_AUTO="1", TRANSPLANT_AUTO_QUIET="1")
    run = transplant_run(args, cwd=ORIGINAL, env=env, loss_log=loss_log)
    assert run.returncode == 0, run.describe()
    assert set(run.field("device")) == {"npu:0"}
    assert run.losses == albert_static.losses
    assert run.field("final_param_sha256") == albert_static.field("final_param_sha256")


def test_distributed_launcher_two_ranks_on_emulated_hccl(albert_migrated: Path, albert_work: Path,
                                                         albert_cpu: Run) -> None:
    """run_distributed_npu.sh with 2 processes (torchrun) on the emulator: DDP over hccl keeps the
    ranks' weights identical."""
    from transplant.emulate.runner import child_environment

    args, loss_log = albert_args(albert_work, "ddp")
    env = child_environment(nproc=2)
    env.update(
        EMULATOR_ENV,
        TRANSPLANT_NPU_COUNT="2",
        NPROC_PER_NODE="2",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(free_port()),
        # the launcher's documented override; plain `torchrun` may not be on PATH in a venv
        TORCHRUN=f"{PYTHON} -m torch.distributed.run",
        HCCL_CONNECT_TIMEOUT="120",
    )
    script = albert_migrated / "run_distributed_npu.sh"
    run = run_process(["bash", str(script), *args[1:]], cwd=albert_migrated, env=env)
    assert run.returncode == 0, run.describe()
    ranks = [read_records(Path(f"{loss_log}.rank{rank}")) for rank in (0, 1)]
    losses = [[r["loss"] for r in records if "loss" in r] for records in ranks]
    for rank_losses in losses:
        assert len(rank_losses) == ALBERT_STEPS
        assert_finite(rank_losses)
    # DistributedSampler gives each rank its own half of the data ...
    assert losses[0] != losses[1]
    assert {r["device"] for r in ranks[0] if "device" in r} == {"npu:0"}
    assert {r["device"] for r in ranks[1] if "device" in r} == {"npu:1"}
    # ... and DDP's gradient all-reduce over hccl keeps the weights equal
    digests = [[r["final_param_sha256"] for r in records if "final_param_sha256" in r] for records in ranks]
    assert digests[0] and digests[0] == digests[1]
    # rank 0 saved the model and evaluated it
    assert (albert_work / "ddp" / "albert" / "eval_results.txt").is_file()


def test_unmigrated_original_is_caught_by_strict_cuda(albert_work: Path) -> None:
    """Without migration or auto mode the original would silently run on the CPU of an Ascend host;
    ``transplant run --strict-cuda`` stops it at its first CUDA query, naming the line."""
    args, loss_log = albert_args(albert_work, "strict")
    run = transplant_run(args, cwd=ORIGINAL, env=EMULATOR_ENV, loss_log=loss_log, strict_cuda=True)
    assert run.returncode != 0
    lines = (ORIGINAL / "run_classifier.py").read_text().splitlines()
    line = next(n for n, text in enumerate(lines, start=1) if "torch.cuda.is_available()" in text)
    assert f"torch.cuda.is_available() at {ORIGINAL / 'run_classifier.py'}:{line}" in run.stderr, run.describe()
    assert run.losses == []


@pytest.fixture(scope="module")
def albert_fp16(albert_migrated: Path, albert_work: Path, albert_static: Run) -> Run:
    """The migrated trainer with --fp16 (apex amp in the original; native torch.amp after migration)."""
    args, loss_log = albert_args(albert_work, "fp16", "--fp16", "--fp16_opt_level", "O1")
    run = transplant_run(args, cwd=albert_migrated, env=EMULATOR_ENV, loss_log=loss_log, strict_cuda=True)
    assert run.returncode == 0, run.describe()
    return run


def test_fp16_trains_on_emulated_npu(albert_fp16: Run, albert_static: Run) -> None:
    """--fp16 (apex amp in the original; native torch.amp after migration): finite, falling loss."""
    run = albert_fp16
    assert set(run.field("device")) == {"npu:0"}
    assert len(run.losses) == ALBERT_STEPS
    assert_finite(run.losses)
    assert _falls(run.losses), run.losses
    # float16 autocast really ran: the losses are close to the float32 run's, not equal
    assert run.losses != albert_static.losses
    assert abs(run.losses[0] - albert_static.losses[0]) < 1e-2


def test_auto_mode_fp16_rewrites_apex_at_import(albert_fp16: Run, albert_work: Path) -> None:
    """The unmodified original with --fp16 under TRANSPLANT_AUTO=1: `from apex import amp` (apex is not
    installed) is rewritten to native AMP as run_classifier.py is imported, and trains exactly like the
    offline migration; the change log names the apex edits."""
    args, loss_log = albert_args(albert_work, "auto_fp16", "--fp16", "--fp16_opt_level", "O1")
    report = albert_work / "auto_fp16_changes.csv"
    env = dict(EMULATOR_ENV, TRANSPLANT_AUTO="1", TRANSPLANT_AUTO_QUIET="1", TRANSPLANT_AUTO_REPORT=str(report))
    run = transplant_run(args, cwd=ORIGINAL, env=env, loss_log=loss_log)
    assert run.returncode == 0, run.describe()
    assert set(run.field("device")) == {"npu:0"}
    assert run.losses == albert_fp16.losses
    rows = read_rows(report)
    apex = {row["Rule"] for row in rows if row["File"] == "run_classifier.py"
            and row["Message"].endswith("(auto mode, rewritten at import)")}
    # the TP403 apex-import removal sits inside TP404's removed `if args.fp16:` block: one edit, one row
    assert "TP404" in apex, rows
