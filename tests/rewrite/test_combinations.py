"""Random combinations of CUDA idioms: output parses, a second run changes nothing (hypothesis)."""

from __future__ import annotations

import ast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transplant.results import Status
from transplant.rewrite import rewrite_source
from transplant.rules import load_ruleset

RULESET = load_ruleset()

# Every program imports torch first: the snippets use `torch.` (a file that does not bind it is broken
# Python, and adding `import torch` would legitimately change what a second run resolves).
HEADERS = [
    "import torch.cuda as tc", "from torch import cuda", "from torch.cuda import amp, synchronize",
    "from torch.cuda.amp import autocast, GradScaler", "import torch.distributed as dist", "import os",
    "import pynvml", "from torch.cuda import (\n    amp as A,\n    nvtx,\n)", "import argparse",
]
LINES = [
    "x = torch.zeros(2, device='cuda').cuda()",
    "device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
    "dev = f'cuda:{rank}'",
    "tc.synchronize()",
    "cuda.empty_cache()",
    "synchronize()",
    "scaler = amp.GradScaler()",
    "scaler = GradScaler(enabled=True)",
    "y = x.to('cuda:%d' % 0) if x.is_cuda else x",
    "dist.init_process_group(backend='nccl' if dist.is_nccl_available() else 'gloo')",
    "os.environ['CUDA_VISIBLE_DEVICES'] = '0'",
    "pynvml.nvmlInit()",
    "state = torch.load('m.pt')",
    "state = torch.load(\n    'm.pt',\n)",
    "torch.backends.cudnn.benchmark = True",
    "model = torch.nn.DataParallel(model).cuda()",
    "print('cuda is', 'cuda')",
    "nvtx.range_push('a')",
    "with A.autocast():\n    pass",
    "with autocast(dtype=torch.float16):\n    z = model(x.cuda(non_blocking=True))",
    "if device.type == 'cuda':\n    torch.cuda.synchronize()\nelif device.type == 'npu':\n    torch.npu.synchronize()",
    "parser = argparse.ArgumentParser()\nparser.add_argument('--device', default='cuda', help='cuda or cpu')",
    "t = torch.ones(1).type('torch.cuda.FloatTensor')",
]


@st.composite
def programs(draw) -> str:
    head = draw(st.lists(st.sampled_from(HEADERS), max_size=4, unique=True))
    body = draw(st.lists(st.sampled_from(LINES), min_size=1, max_size=6))
    text = "\n".join(body)
    if draw(st.booleans()):
        text = "def main(rank, model):\n" + "\n".join("    " + line for line in text.splitlines())
    return "\n".join(["import torch", *head, text]) + "\n"


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_combinations_parse_and_are_idempotent(program: str) -> None:
    first = rewrite_source(program.encode(), "combo.py", RULESET)
    assert first.status is not Status.FAILED, first.reason
    if first.status is Status.UNCHANGED:
        return
    ast.parse(first.new_source)
    assert first.changes
    second = rewrite_source(first.new_source, "combo.py", RULESET)
    assert second.status is Status.UNCHANGED, (first.new_source.decode(), second.changes)
