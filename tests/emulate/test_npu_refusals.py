"""The emulator refuses what the device refuses (issue 13): a green emulated run must mean something."""

from __future__ import annotations

import pickle
import textwrap
from pathlib import Path

import pytest

from emulate_helpers import run_runner


def test_pack_padded_sequence_refuses_lengths_on_npu(npu):
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence

    x = torch.rand(2, 3, 4).npu()
    with pytest.raises(RuntimeError, match=r"^'lengths' argument should be a 1D CPU int64 tensor, but got 1D npu:0 "
                                           r"Long tensor$"):
        pack_padded_sequence(x, torch.tensor([3, 2]).npu(), batch_first=True)
    # lengths on the CPU (a tensor or a list) are what torch wants on every device
    packed = pack_padded_sequence(x, torch.tensor([3, 2]), batch_first=True)
    assert packed.data.device.type == "npu" and packed.batch_sizes.device.type == "cpu"
    assert pack_padded_sequence(x, [3, 2], batch_first=True).data.shape == (5, 4)


def test_plain_pickle_of_npu_tensors_still_works(npu):
    """Only pickling *for another process* is refused; pickle/torch.save keep the real torch_npu format."""
    import torch

    t = torch.arange(4.0).npu()
    back = pickle.loads(pickle.dumps(t))
    assert back.device.type == "npu" and back.tolist() == [0.0, 1.0, 2.0, 3.0]


SPAWN = """
import sys
import torch
import torch.multiprocessing as mp

def child(model):
    x = torch.rand(2, 4).npu()
    print("child sum", float(model.npu()(x).sum()))

if __name__ == "__main__":
    mp.set_start_method("spawn")
    model = torch.nn.Linear(4, 2)
    if sys.argv[1] == "npu":
        model = model.npu()
    p = mp.Process(target=child, args=(model,))
    p.start()
    p.join()
    sys.exit(p.exitcode)
"""


@pytest.mark.slow
@pytest.mark.parametrize("where", ["npu", "cpu"])
def test_npu_model_sent_to_a_spawned_process_is_refused(tmp_path: Path, where: str):
    script = tmp_path / "spawn_model.py"
    script.write_text(textwrap.dedent(SPAWN), encoding="utf-8")
    done = run_runner([str(script), where], cwd=tmp_path, env={"TRANSPLANT_NPU_COUNT": "1"})
    if where == "npu":
        assert done.returncode == 1, done.stderr
        assert "an npu tensor (a Parameter of shape [2, 4] on npu:0) is being pickled for another process" in done.stderr
        assert "child sum" not in done.stdout
        assert "Expected all tensors to be on the same device" not in done.stderr
    else:  # a CPU model crosses the process boundary and is moved in the child, as the message advises
        assert done.returncode == 0, done.stderr
        assert "child sum" in done.stdout
