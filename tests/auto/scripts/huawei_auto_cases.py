"""Constructs from Huawei's transfer_to_npu tests (issue #17 items 6-8) and the torch.cuda memory/random
names of issue #15, in an unmodified CUDA script: run it with TRANSPLANT_AUTO=1 under `transplant run`."""

import json
import sys

import torch

results = {}
lazy = torch.nn.LazyLinear(4).to("cpu")
results["lazy_to_cpu"] = str(lazy(torch.ones(2, 3)).device)
for name, move in (("to_cuda", lambda m: m.to("cuda")), ("cuda", lambda m: m.cuda()), ("npu", lambda m: m.npu())):
    module = move(torch.nn.LazyLinear(4))
    results[f"lazy_{name}"] = str(module(torch.ones(2, 3).cuda()).device)
results["generator"] = str(torch.Generator("cuda").device)
results["kernel"] = torch.autograd.profiler_util.Kernel("x", "cuda", 11).device
torch.cuda.random.manual_seed(1)
results["initial_seed"] = torch.cuda.initial_seed()
torch.cuda.set_per_process_memory_fraction(0.5)
results["memory_snapshot"] = torch.cuda.memory_snapshot()
results["nested_stats"] = torch.cuda.memory_stats_as_nested_dict()
torch.cuda.reset_max_memory_cached()
results["utilization"] = torch.cuda.utilization()
results["default_generators"] = len(torch.cuda.default_generators) == torch.cuda.device_count()
with open(sys.argv[1], "w") as handle:
    json.dump(results, handle)
